use super::raw::cut;
use super::*;

#[test]
fn cut_respects_char_boundaries() {
    assert_eq!(cut("héllo", 2), "h");
    assert_eq!(cut("abc", 10), "abc");
}

/// What `time`'s formatter writes, which the hand-written one must match byte for byte.
fn reference(time: SystemTime) -> String {
    time::OffsetDateTime::from(time)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn serialized<T: Serialize>(value: T) -> String {
    serde_json::to_string(&value).unwrap()
}

#[derive(Serialize)]
struct Stamp(#[serde(serialize_with = "rfc3339")] SystemTime);

#[derive(Serialize)]
struct Address(#[serde(serialize_with = "ip_text")] Option<IpAddr>);

#[test]
fn timestamps_match_the_general_formatter_at_the_edges() {
    let at = |secs: u64, nanos: u32| UNIX_EPOCH + Duration::new(secs, nanos);
    let edges = [
        at(0, 0),
        at(0, 1),
        at(1_795_579_673, 578_659_464),
        at(1_795_579_673, 500_000_000),
        at(1_795_579_673, 999_999_999),
        at(951_782_400, 10), // 2000-02-29
        at(253_402_300_799, 999_999_990),
    ];
    for time in edges {
        assert_eq!(serialized(Stamp(time)), format!("\"{}\"", reference(time)));
    }
    // Past year 9999: an error for this record, not a panic.
    assert!(serde_json::to_string(&Stamp(at(253_402_300_800, 0))).is_err());
    assert!(serde_json::to_string(&Stamp(at(u64::MAX / 2, 0))).is_err());
    // Before 1970 the general formatter writes it.
    let before = UNIX_EPOCH - Duration::new(86_400, 500_000_000);
    assert_eq!(serialized(Stamp(before)), "\"1969-12-30T23:59:59.5Z\"");
}

proptest::proptest! {
    #[test]
    fn timestamps_match_the_general_formatter(
        secs in 0u64..=253_402_300_799,
        nanos in 0u32..1_000_000_000,
        zeros in 0u32..9,
    ) {
        // Trailing zeros in the fraction are what the formatter trims: make them common.
        let nanos = nanos / 10u32.pow(zeros) * 10u32.pow(zeros);
        let time = UNIX_EPOCH + Duration::new(secs, nanos);
        // Twice: the second hits the cached second.
        for _ in 0..2 {
            proptest::prop_assert_eq!(
                serialized(Stamp(time)),
                format!("\"{}\"", reference(time))
            );
        }
    }

    #[test]
    fn addresses_match_display(bits in proptest::prelude::any::<u32>(), v6 in proptest::prelude::any::<u128>()) {
        for ip in [
            IpAddr::from(std::net::Ipv4Addr::from(bits)),
            IpAddr::from(std::net::Ipv6Addr::from(v6)),
        ] {
            proptest::prop_assert_eq!(serialized(Address(Some(ip))), format!("\"{ip}\""));
        }
    }
}

/// Text of every kind a request can bring: plain, quotes and backslashes, control bytes,
/// DEL, non-ASCII and astral characters.
fn text() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::strategy::Strategy;
    proptest::prop_oneof![
        "[a-zA-Z0-9/._~-]{0,40}",
        proptest::collection::vec(
            proptest::prop_oneof![
                proptest::char::range('\0', '\u{7f}'),
                proptest::char::any(),
                proptest::sample::select(vec!['"', '\\', '\u{1f}', '\u{7f}', 'é', '😀']),
            ],
            0..24,
        )
        .prop_map(|chars| chars.into_iter().collect()),
    ]
}

fn event() -> impl proptest::strategy::Strategy<Value = AuditEvent> {
    use proptest::option::of;
    use proptest::prelude::*;
    let principal = (text(), of(text()), of(text()), 0..4usize).prop_map(
        |(subject, issuer, api_key_id, method)| Principal {
            subject,
            issuer,
            method: ["jwt", "api_key", "basic", "introspection"][method],
            api_key_id,
        },
    );
    let ip = prop_oneof![
        any::<u32>().prop_map(|b| IpAddr::from(std::net::Ipv4Addr::from(b))),
        any::<u128>().prop_map(|b| IpAddr::from(std::net::Ipv6Addr::from(b))),
    ];
    let outcome = proptest::sample::select(OUTCOMES.to_vec());
    (
        (
            0u64..=253_402_300_799,
            0u32..1_000_000_000,
            text(),
            text(),
            of(text()),
            text(),
        ),
        (
            any::<u16>(),
            outcome,
            of(text()),
            of(text()),
            of(principal),
            of(text()),
        ),
        (
            of(ip),
            of(text()),
            any::<u64>(),
            prop_oneof![Just(0u64), any::<u64>()],
        ),
    )
        .prop_map(
            |(
                (secs, nanos, request_id, method, route, path),
                (status, outcome, layer, reason, principal, attempted_user),
                (client_ip, user_agent, latency_us, redacted),
            )| AuditEvent {
                time: UNIX_EPOCH + Duration::new(secs, nanos),
                request_id,
                method,
                route,
                path,
                status,
                outcome,
                layer: layer.map(Cow::Owned),
                reason: reason.map(Cow::Owned),
                principal,
                attempted_user,
                client_ip,
                user_agent,
                latency_us,
                redacted,
            },
        )
}

proptest::proptest! {
    #[test]
    fn direct_json_matches_serde(event in event()) {
        let mut direct = Vec::new();
        proptest::prop_assert!(event.write_entry_json(&mut direct));
        let entry = crate::audit::AuditEntry::Request(event);
        let through_serde = serde_json::to_vec(&entry)
            .map_err(|error| proptest::test_runner::TestCaseError::fail(error.to_string()))?;
        proptest::prop_assert_eq!(
            String::from_utf8_lossy(&direct),
            String::from_utf8_lossy(&through_serde)
        );
        proptest::prop_assert_eq!(direct, through_serde);
    }
}

/// Every outcome. The direct writer names them with `as_str`, serde with `rename_all`: a new
/// variant must be added here.
const OUTCOMES: [Outcome; 7] = [
    Outcome::Allowed,
    Outcome::Unauthenticated,
    Outcome::Forbidden,
    Outcome::RateLimited,
    Outcome::Invalid,
    Outcome::Error,
    Outcome::Cancelled,
];

#[test]
fn outcome_names_match_serde() {
    for outcome in OUTCOMES {
        assert_eq!(serialized(outcome), format!("\"{}\"", outcome.as_str()));
    }
}

#[test]
fn direct_json_leaves_times_out_of_range_to_serde() {
    let mut event = AuditEvent {
        time: UNIX_EPOCH + Duration::new(253_402_300_800, 0),
        request_id: "id".into(),
        method: "GET".into(),
        route: None,
        path: "/".into(),
        status: 200,
        outcome: Outcome::Allowed,
        layer: None,
        reason: None,
        principal: None,
        attempted_user: None,
        client_ip: None,
        user_agent: None,
        latency_us: 1,
        redacted: 0,
    };
    let mut out = Vec::new();
    assert!(!event.write_entry_json(&mut out));
    assert!(
        out.is_empty(),
        "nothing is written when serde has to decide"
    );
    event.time = UNIX_EPOCH - Duration::from_secs(1);
    assert!(!event.write_entry_json(&mut out));
    assert!(out.is_empty());
}

#[test]
fn small_and_large_octets_are_written_in_full() {
    for ip in ["0.0.0.0", "255.255.255.255", "10.0.99.100", "1.22.203.9"] {
        let ip: IpAddr = ip.parse().unwrap();
        assert_eq!(serialized(Address(Some(ip))), format!("\"{ip}\""));
    }
    assert_eq!(serialized(Address(None)), "null");
}
