//! The TLS side of a snapshot: certificate references and HTTP challenges,
//! validated with the rest and looked up by gateways.

mod common;

use common::{options, sample};
use router::{CertificateDoc, ChallengeDoc, ChallengeKind, RoutingTable};

fn challenge(kind: ChallengeKind, hostname: &str, token: &str, response: &str) -> ChallengeDoc {
    ChallengeDoc {
        kind,
        hostname: hostname.into(),
        token: token.into(),
        response: response.into(),
    }
}

#[test]
fn certificates_and_challenges_are_looked_up_by_host_and_token() {
    let mut snapshot = sample();
    snapshot.certificates = vec![CertificateDoc {
        hostname: "erp.acme.example".into(),
        id: 42,
        not_after: 1_900_000_000,
    }];
    snapshot.challenges = vec![
        challenge(
            ChallengeKind::AcmeHttp01,
            "erp.acme.example",
            "tok-A_1",
            "tok-A_1.thumb",
        ),
        challenge(
            ChallengeKind::Ownership,
            "shop.newcomer.example",
            "own-1",
            "own-1",
        ),
    ];
    let table = RoutingTable::build(&snapshot, &options()).unwrap();
    let certs = table.certificates();
    assert_eq!(certs.len(), 1);
    assert_eq!(certs[0].hostname.as_str(), "erp.acme.example");
    assert_eq!((certs[0].id, certs[0].not_after), (42, 1_900_000_000));
    assert_eq!(table.challenge_count(), 2);

    // ACME answers for any host; ownership only for its own.
    assert_eq!(table.acme_challenge("tok-A_1"), Some("tok-A_1.thumb"));
    assert_eq!(table.acme_challenge("own-1"), None);
    assert_eq!(
        table.ownership_challenge("shop.newcomer.example", "own-1"),
        Some("own-1")
    );
    assert_eq!(table.ownership_challenge("erp.acme.example", "own-1"), None);
    assert_eq!(
        table.ownership_challenge("shop.newcomer.example", "tok-A_1"),
        None
    );

    // Both sections survive a JSON round trip; empty ones are left out.
    let json = serde_json::to_string(&snapshot).unwrap();
    assert_eq!(router::Snapshot::from_json(&json).unwrap(), snapshot);
    let bare = serde_json::to_string(&sample()).unwrap();
    assert!(!bare.contains("certificates") && !bare.contains("challenges"));
}

#[test]
fn bad_references_and_challenges_are_listed_with_their_location() {
    let mut snapshot = sample();
    snapshot.certificates = vec![
        CertificateDoc {
            hostname: "erp.acme.example".into(),
            id: 1,
            not_after: 0,
        },
        // The same domain twice.
        CertificateDoc {
            hostname: "ERP.acme.example.".into(),
            id: 2,
            not_after: 0,
        },
        // Nobody's domain: a gateway must never hold a certificate it
        // cannot attribute to a tenant.
        CertificateDoc {
            hostname: "unclaimed.example".into(),
            id: 3,
            not_after: 0,
        },
        CertificateDoc {
            hostname: "10.0.0.1".into(),
            id: 4,
            not_after: 0,
        },
    ];
    snapshot.challenges = vec![
        challenge(
            ChallengeKind::AcmeHttp01,
            "erp.acme.example",
            "../etc/passwd",
            "x",
        ),
        challenge(
            ChallengeKind::AcmeHttp01,
            "erp.acme.example",
            "ok",
            "line\nbreak",
        ),
        challenge(ChallengeKind::AcmeHttp01, "erp.acme.example", "dup", "a"),
        challenge(ChallengeKind::AcmeHttp01, "erp.acme.example", "dup", "b"),
        challenge(ChallengeKind::Ownership, "a..b", "tok", "tok"),
        challenge(ChallengeKind::Ownership, "x.example", &"t".repeat(129), "t"),
    ];
    let problems = RoutingTable::build(&snapshot, &options()).unwrap_err();
    let found: Vec<String> = problems
        .iter()
        .map(|p| format!("{}: {}", p.location, p.message))
        .collect();
    let expected = [
        "certificates[1].hostname: erp.acme.example already has a certificate (certificates[0])",
        "certificates[2].hostname: unclaimed.example is not a custom domain of any tenant",
        "certificates[3].hostname: invalid hostname \"10.0.0.1\": an IP address is not a hostname",
        "challenges[0].token: must be 1 to 128 characters of A-Z, a-z, 0-9, - and _",
        "challenges[1].response: must be 1 to 512 printable ASCII characters",
        "challenges[3].token: the same challenge is listed twice",
        "challenges[4].hostname: invalid hostname \"a..b\": hostname has an empty label",
        "challenges[5].token: must be 1 to 128 characters of A-Z, a-z, 0-9, - and _",
    ];
    assert_eq!(found, expected);
}
