//! Value detectors: find secrets inside any string, whatever field holds them.
//!
//! Every built-in detector is a hand-written scanner rather than a regular expression: the layer
//! runs all of them over every string of every response, strings shorter than a detector's
//! [`min_len`](Detector::min_len) are not even passed to it, and a cheap pre-filter (enough
//! digits or capitals, `@`, `eyJ`, a known key prefix) rejects almost every other string after
//! one pass over its bytes, which a dozen regexes could not do at the throughput we aim for
//! (200 MB/s on one core).

use std::fmt;
use std::ops::Range;
use std::sync::OnceLock;

use memchr::memmem;

/// Finds secrets inside a string. Implement it to add your own detector, then add it with
/// [`Rule::detector`](super::Rule::detector).
///
/// `find` must be fast on strings that hold no secret: it runs on every string and number (at
/// least [`min_len`](Self::min_len) bytes long) of every JSON response the layer rewrites, and on
/// every text given to [`RedactLayer::scrub`](crate::RedactLayer::scrub).
pub trait Detector: Send + Sync + 'static {
    /// A short, stable name (`card_number`): it counts the detector's findings in
    /// [`Redactions`](super::Redactions) and identifies its rule (a rule for a detector of the
    /// same name replaces the earlier one).
    fn name(&self) -> &'static str;

    /// Appends the byte ranges of `text` that hold a secret. Ranges may overlap; ranges that are
    /// out of bounds or not on character boundaries are ignored.
    fn find(&self, text: &str, found: &mut Vec<Range<usize>>);

    /// The length in bytes of the shortest text that can hold a secret (default 1): `find` is not
    /// called for shorter strings. Most strings in a response are short names and words, and
    /// skipping them costs less than a call each.
    fn min_len(&self) -> usize {
        1
    }
}

impl fmt::Debug for dyn Detector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Detector").field(&self.name()).finish()
    }
}

/// Payment card numbers: 13 to 19 digits, optionally grouped by single spaces or dashes, that
/// pass the Luhn check. Name: `card_number`.
#[derive(Clone, Copy, Debug, Default)]
pub struct CardNumber;

impl Detector for CardNumber {
    fn name(&self) -> &'static str {
        "card_number"
    }

    /// 13 digits: the shortest card numbers.
    fn min_len(&self) -> usize {
        13
    }

    fn find(&self, text: &str, found: &mut Vec<Range<usize>>) {
        let b = text.as_bytes();
        // Counting digits first (vectorized) skips the byte loop for most strings.
        if b.len() < self.min_len() || count(b, |c| c.is_ascii_digit()) < 13 {
            return;
        }
        let mut groups = None;
        let mut i = 0;
        while i < b.len() {
            if !b[i].is_ascii_digit() {
                i += 1;
                continue;
            }
            // One run of digit groups joined by single spaces or dashes.
            let mut j = i;
            let mut digits = 0usize;
            loop {
                while b.get(j).is_some_and(u8::is_ascii_digit) {
                    j += 1;
                    digits += 1;
                }
                match b.get(j) {
                    Some(b' ' | b'-') if b.get(j + 1).is_some_and(u8::is_ascii_digit) => j += 1,
                    _ => break,
                }
            }
            step(j - i);
            // Most runs are short numbers: only a run long enough to hold a card is examined.
            if digits >= 13 {
                find_cards(b, i..j, groups.get_or_insert_with(Default::default), found);
            }
            i = j.max(i + 1);
        }
    }
}

/// Card numbers inside one run of digit groups (`run`, joined by single spaces or dashes). The
/// whole run is the usual case; when it is not a card, windows that start and end on group
/// boundaries are tried (a card followed by its CVV or expiry: `4111 1111 1111 1111 123`), and
/// so are the prefixes of a long unbroken run (`41111111111111111227`, masked whole; runs over
/// 32 digits are not cards). Over-matching only masks more.
///
/// Linear in the run, allocation-free, one pass: each digit is read once into running Luhn
/// sums, and a window passes when the sums at its two ends agree. A window holds at most 19
/// digits, so a start is decided as soon as the next group is out of its reach, and its
/// farthest passing end is the last group seen with the matching sum: one look-up per parity
/// (`latest`), not a try per end.
fn find_cards(b: &[u8], run: Range<usize>, groups: &mut CardGroups, found: &mut Vec<Range<usize>>) {
    groups.clear();
    // Group numbers: `next` is read (the look-ahead), `start` is the first not yet decided.
    let mut next = 0;
    let mut start = 0;
    let mut at = run.start;
    let mut sums = LuhnSums::default();
    while at < run.end || start < next {
        if at < run.end {
            let from = at;
            while at < run.end && b[at].is_ascii_digit() {
                sums.push(b[at]);
                at += 1;
            }
            step(at - from);
            groups.set(next, from..at, sums);
            // Past the single separator.
            at += 1;
            // Decide every start that this group is out of reach of.
            while start < next && sums.digits - groups.before(start).digits > MAX_CARD as u64 {
                start = groups.decide(b, start, next, found);
            }
            groups.admit(next);
            next += 1;
        } else {
            start = groups.decide(b, start, next, found);
        }
    }
}

/// The fewest and most digits of a card number.
const MIN_CARD: usize = 13;
const MAX_CARD: usize = 19;
/// Longest unbroken run of digits still searched for a card with other digits glued on.
const MAX_GLUED_RUN: usize = 32;
/// Groups kept: a power of two above the 20 a window and its look-ahead can span.
const CARD_GROUPS: usize = 32;

/// The last groups of a run, by number mod [`CARD_GROUPS`], as arrays of plain values (copying
/// whole group structs between them cost more than the checks).
struct CardGroups {
    starts: [usize; CARD_GROUPS],
    ends: [usize; CARD_GROUPS],
    /// The running sums after each group.
    after: [LuhnSums; CARD_GROUPS],
    /// For each parity of a window's end and Luhn sum there, the last group admitted that ends
    /// so, by number + 1 (0: none).
    latest: [[usize; 10]; 2],
}

impl Default for CardGroups {
    fn default() -> Self {
        Self {
            starts: [0; CARD_GROUPS],
            ends: [0; CARD_GROUPS],
            after: [LuhnSums::default(); CARD_GROUPS],
            latest: [[0; 10]; 2],
        }
    }
}

impl CardGroups {
    fn clear(&mut self) {
        self.latest = [[0; 10]; 2];
    }

    fn set(&mut self, number: usize, bytes: Range<usize>, after: LuhnSums) {
        let slot = number % CARD_GROUPS;
        self.starts[slot] = bytes.start;
        self.ends[slot] = bytes.end;
        self.after[slot] = after;
    }

    /// Makes group `number` a possible end for the starts still undecided.
    fn admit(&mut self, number: usize) {
        let after = self.after[number % CARD_GROUPS];
        let parity = (after.digits % 2) as usize;
        self.latest[parity][usize::from(after.sums[parity])] = number + 1;
    }

    /// The running sums before group `number`.
    fn before(&self, number: usize) -> LuhnSums {
        match number.checked_sub(1) {
            Some(previous) => self.after[previous % CARD_GROUPS],
            None => LuhnSums::default(),
        }
    }

    /// Finds the longest card starting at group `start`, given the groups admitted up to
    /// `next` (all within reach); returns the next start.
    fn decide(&self, b: &[u8], start: usize, next: usize, found: &mut Vec<Range<usize>>) -> usize {
        step(1);
        let slot = start % CARD_GROUPS;
        let before = self.before(start);
        let (from, to) = (self.starts[slot], self.ends[slot]);
        if to - from > MAX_CARD {
            // A card with digits glued after it (an expiry, a CVV, a date): when a 13-19 digit
            // prefix of the run is Luhn-valid, the whole run is masked, so no card digits are
            // left behind. Runs of one repeated digit and runs over 32 digits (hashes, padding)
            // are not cards; a card with digits glued *before* it is not found (every window
            // of a long id would pass Luhn one time in ten).
            let group = &b[from..to];
            if group.len() <= MAX_GLUED_RUN
                && group.iter().any(|d| *d != group[0])
                && luhn_prefix(&group[..MAX_CARD])
            {
                found.push(from..to);
            }
            return start + 1;
        }
        let end = (0..2)
            .filter_map(|parity| {
                let end = self.latest[parity][usize::from(before.sums[parity])].checked_sub(1)?;
                if !(start..next).contains(&end) {
                    return None;
                }
                let digits = self.after[end % CARD_GROUPS].digits - before.digits;
                debug_assert!(self.after[end % CARD_GROUPS].valid_since(&before));
                (MIN_CARD as u64..=MAX_CARD as u64)
                    .contains(&digits)
                    .then_some(end)
            })
            .max();
        match end {
            Some(end) => {
                found.push(from..self.ends[end % CARD_GROUPS]);
                end + 1
            }
            None => start + 1,
        }
    }
}

/// Running Luhn sums (mod 10) of the digits of a run so far, for both parities: which digits a
/// window doubles depends on where it ends. A window passes when the sums at its two ends agree.
#[derive(Clone, Copy, Debug, Default)]
struct LuhnSums {
    digits: u64,
    /// Mod 10: `[0]` with the digits at even positions (from the start of the run) doubled,
    /// `[1]` with those at odd positions doubled.
    sums: [u8; 2],
}

impl LuhnSums {
    fn push(&mut self, digit: u8) {
        let d = digit - b'0';
        let doubled = if d * 2 > 9 { d * 2 - 9 } else { d * 2 };
        let odd = (self.digits % 2) as usize;
        self.sums[odd] = mod10(self.sums[odd] + doubled);
        self.sums[1 - odd] = mod10(self.sums[1 - odd] + d);
        self.digits += 1;
    }

    /// Whether the digits pushed since `earlier` pass Luhn: the rightmost digit of a window is
    /// never doubled, the one before it is, and so on, so the doubled ones are those whose
    /// position has the parity of the window's end.
    fn valid_since(&self, earlier: &LuhnSums) -> bool {
        let end = (self.digits % 2) as usize;
        self.sums[end] == earlier.sums[end]
    }
}

/// `n` mod 10 for `n` < 20.
fn mod10(n: u8) -> u8 {
    if n >= 10 { n - 10 } else { n }
}

/// Whether some 13-19 digit prefix of `digits` passes Luhn.
fn luhn_prefix(digits: &[u8]) -> bool {
    let mut sums = LuhnSums::default();
    digits.iter().any(|&d| {
        sums.push(d);
        sums.digits >= MIN_CARD as u64 && sums.valid_since(&LuhnSums::default())
    })
}

/// How many bytes of `b` are `what`: counted in bytes, not in the `usize`s of
/// `filter().count()`, so that it vectorizes 16 or 32 bytes at a time.
fn count(b: &[u8], what: impl Fn(u8) -> bool) -> usize {
    b.chunks(255)
        .map(|chunk| chunk.iter().fold(0u8, |n, &c| n + u8::from(what(c))))
        .map(usize::from)
        .sum()
}

/// Counts `n` steps of work (bytes read) in tests, so that the detectors can be checked to do
/// work linear in their input without timing them; nothing outside tests.
#[inline(always)]
fn step(n: usize) {
    #[cfg(test)]
    tests::STEPS.with(|steps| steps.set(steps.get() + n as u64));
    #[cfg(not(test))]
    let _ = n;
}

fn is_b64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// JSON Web Tokens (and JWS/JWE compact serializations): `eyJ...` base64url segments joined by
/// dots. Name: `jwt`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Jwt;

impl Detector for Jwt {
    fn name(&self) -> &'static str {
        "jwt"
    }

    /// `eyJ` + 8, a dot, 8, a dot: nothing shorter is a JWT.
    fn min_len(&self) -> usize {
        21
    }

    fn find(&self, text: &str, found: &mut Vec<Range<usize>>) {
        static FINDER: OnceLock<memmem::Finder<'static>> = OnceLock::new();
        let b = text.as_bytes();
        if b.len() < self.min_len() {
            return;
        }
        let finder = FINDER.get_or_init(|| memmem::Finder::new(b"eyJ"));
        let mut from = 0;
        while let Some(at) = finder.find(&b[from..]) {
            let start = from + at;
            let mut j = start;
            let mut segments = 1;
            let mut header = usize::MAX;
            let mut later_content = false;
            let mut segment_start = j;
            while j < b.len() {
                if is_b64url(b[j]) {
                    j += 1;
                } else if b[j] == b'.' && segments < 5 {
                    if segments == 1 {
                        header = j - segment_start;
                    } else if j > segment_start {
                        later_content = true;
                    }
                    segments += 1;
                    j += 1;
                    segment_start = j;
                } else {
                    break;
                }
            }
            later_content |= j > segment_start && segments > 1;
            // The header is `eyJ` plus a few characters; any later segment may be empty (an
            // unsigned token, an encrypted one with `alg: dir`, a `{}` payload is `e30`), but not
            // all of them.
            step(j - start);
            if segments >= 3 && header != usize::MAX && header >= 8 && later_content {
                found.push(start..j);
                from = j;
            } else if segments >= 3 && header < 8 {
                // Only a token starting after the short first segment can still match.
                from = start + header + 1;
            } else {
                // Every `eyJ` inside [start, j) ends at `j` too, with no more segments and a
                // shorter header: none can match. Searching on from `start + 3` instead read
                // the same run again for each `eyJ` in it (quadratic).
                from = j;
            }
            if from >= b.len() {
                break;
            }
        }
    }
}

/// Well-known API key formats: AWS access key ids (`AKIA`/`ASIA` and 16 characters), GitHub
/// tokens (`ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_`, `github_pat_`), Stripe secret keys
/// (`sk_live_`, `rk_live_`), Slack tokens (`xox?-`) and `Bearer` credentials in text. Name:
/// `api_key`.
#[derive(Clone, Copy, Debug, Default)]
pub struct KnownApiKey;

/// Prefixes and what must follow them: (prefix, is a char of the key, minimum key length).
type KeyFormat = (&'static str, fn(u8) -> bool, usize);

fn upper_alnum(b: u8) -> bool {
    b.is_ascii_uppercase() || b.is_ascii_digit()
}
fn alnum(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}
fn alnum_underscore(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}
fn slack(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-'
}
/// The first two bytes of some key prefix (`AK`, `AS`, `gh`, `sk`, `rk`, `xo`, `be`, `BE`...).
fn starts_key(x: u8, y: u8) -> bool {
    (x == b'A' && (y == b'K' || y == b'S'))
        | (x == b'g' && y == b'h')
        | ((x == b's' || x == b'r') && y == b'k')
        | (x == b'x' && y == b'o')
        | (x | 0x20 == b'b' && y | 0x20 == b'e')
}

fn token68(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=')
}

const KEY_FORMATS: &[KeyFormat] = &[
    ("AKIA", upper_alnum, 16),
    ("ASIA", upper_alnum, 16),
    ("ghp_", alnum, 36),
    ("gho_", alnum, 36),
    ("ghu_", alnum, 36),
    ("ghs_", alnum, 36),
    ("ghr_", alnum, 36),
    ("github_pat_", alnum_underscore, 22),
    ("sk_live_", alnum, 16),
    ("rk_live_", alnum, 16),
    ("xoxb-", slack, 10),
    ("xoxp-", slack, 10),
    ("xoxa-", slack, 10),
    ("bearer ", token68, 8),
];

impl Detector for KnownApiKey {
    fn name(&self) -> &'static str {
        "api_key"
    }

    /// The shortest format is a prefix of 5 and 10 characters, or `bearer ` and 8.
    fn min_len(&self) -> usize {
        15
    }

    fn find(&self, text: &str, found: &mut Vec<Range<usize>>) {
        let b = text.as_bytes();
        // Whether any two bytes could start a key, over the whole string without a branch
        // (vectorized): most strings have no such pair and end here.
        let pairs = b.iter().zip(b.iter().skip(1));
        if b.len() < self.min_len() || !pairs.fold(false, |any, (&x, &y)| any | starts_key(x, y)) {
            return;
        }
        // A byte loop with a two-byte check instead of a multi-pattern automaton: most
        // strings are short, where the automaton's set-up per call cost more than the scan.
        let mut i = 0;
        while i < b.len() {
            let next = b.get(i + 1).copied().unwrap_or(0);
            if !starts_key(b[i], next) {
                i += 1;
                continue;
            }
            let rest = &b[i..];
            let hit = KEY_FORMATS.iter().find(|(prefix, _, _)| {
                let prefix = prefix.as_bytes();
                let any_case = prefix[0] == b'b';
                // Byte by byte: these prefixes are too short for a `memcmp` call to pay.
                rest.len() >= prefix.len()
                    && rest
                        .iter()
                        .zip(prefix)
                        .all(|(c, p)| c == p || any_case && c.eq_ignore_ascii_case(p))
            });
            let Some(&(prefix, is_key_char, min)) = hit else {
                i += 1;
                continue;
            };
            let key_start = i + prefix.len();
            let key_len = b[key_start..]
                .iter()
                .take_while(|&&c| is_key_char(c))
                .count();
            step(prefix.len() + key_len);
            if key_len >= min {
                // For `Bearer x`, only the credential is secret.
                let start = if prefix == "bearer " { key_start } else { i };
                found.push(start..key_start + key_len);
                i = key_start + key_len;
            } else {
                i += 1;
            }
        }
    }
}

/// E-mail addresses (`local@domain.tld`). Name: `email`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Email;

/// Bytes of non-ASCII characters count as letters (internationalized addresses, RFC 6531);
/// every byte of a multi-byte character is >= 0x80, so a match never splits a character.
fn local_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b >= 0x80 || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-')
}
fn domain_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b >= 0x80 || b == b'.' || b == b'-'
}

impl Detector for Email {
    fn name(&self) -> &'static str {
        "email"
    }

    /// `a@b.co` is the shortest address.
    fn min_len(&self) -> usize {
        6
    }

    fn find(&self, text: &str, found: &mut Vec<Range<usize>>) {
        let b = text.as_bytes();
        if b.len() < self.min_len() {
            return;
        }
        let mut last_end = 0;
        for at in memchr::memchr_iter(b'@', b) {
            if at < last_end {
                continue;
            }
            let start = at
                - b[last_end..at]
                    .iter()
                    .rev()
                    .take_while(|&&c| local_char(c))
                    .count();
            step(at - start);
            if start == at {
                continue;
            }
            let mut end = at + 1 + b[at + 1..].iter().take_while(|&&c| domain_char(c)).count();
            step(end - at);
            while end > at + 1 && matches!(b[end - 1], b'.' | b'-') {
                end -= 1;
            }
            let domain = &b[at + 1..end];
            let Some(dot) = domain.iter().rposition(|&c| c == b'.') else {
                continue;
            };
            let tld = &domain[dot + 1..];
            if dot == 0 || tld.len() < 2 || !tld.iter().all(u8::is_ascii_alphabetic) {
                continue;
            }
            found.push(start..end);
            last_end = end;
        }
    }
}

/// International bank account numbers: a country code, two check digits and up to 30 letters
/// and digits (optionally in groups separated by single spaces) that pass the ISO 13616
/// mod-97 check. Name: `iban`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Iban;

impl Detector for Iban {
    fn name(&self) -> &'static str {
        "iban"
    }

    /// The shortest IBANs (Norway) have 15 characters.
    fn min_len(&self) -> usize {
        15
    }

    fn find(&self, text: &str, found: &mut Vec<Range<usize>>) {
        let b = text.as_bytes();
        // An IBAN has 15 or more capitals and digits: counted first (vectorized), this skips
        // the byte loop for most strings.
        if b.len() < self.min_len() || count(b, upper_alnum) < 15 {
            return;
        }
        // Runs of groups of capitals and digits joined by single spaces.
        let mut groups = None;
        let mut i = 0;
        while i < b.len() {
            if !upper_alnum(b[i]) {
                i += 1;
                continue;
            }
            let start = i;
            let mut head = iban_head(b, i);
            while i < b.len() {
                if b[i] == b' ' && b.get(i + 1).is_some_and(|&c| upper_alnum(c)) {
                    head |= iban_head(b, i + 1);
                } else if !upper_alnum(b[i]) {
                    break;
                }
                i += 1;
            }
            step(i - start);
            // A shorter run, or one where no group starts like an IBAN, holds none. The groups'
            // arrays are set up once per text, not per run.
            if head && i - start >= MIN_IBAN {
                find_ibans(
                    b,
                    start..i,
                    groups.get_or_insert_with(Default::default),
                    found,
                );
            }
        }
    }
}

/// IBANs inside one run of groups: each starts a group (after a byte that is not a letter or
/// digit) with two capitals and two digits, ends a group (before one that is not a letter or
/// digit), holds 15-34 characters and passes mod 97; the longest from each start wins.
///
/// Linear in the run, allocation-free, one pass: each character is read once into a running
/// remainder of the whole run, so a window's remainder comes from the remainders at its ends;
/// a window holds at most 34 characters, so a start is decided as soon as the next group is out
/// of its reach, trying only the ends 15 to 34 characters away.
fn find_ibans(b: &[u8], run: Range<usize>, groups: &mut IbanGroups, found: &mut Vec<Range<usize>>) {
    let mut next = 0;
    let mut start = 0;
    let mut at = run.start;
    let mut sums = Mod97::default();
    while at < run.end || start < next {
        if at < run.end {
            let from = at;
            let mut fifth = None;
            while at < run.end && b[at] != b' ' {
                sums.push(b[at]);
                at += 1;
                if at - from == 4 {
                    fifth = Some(sums);
                }
            }
            step(at - from);
            let head = fifth
                .filter(|_| iban_head(b, from))
                .map(|fifth| IbanHead::new(&fifth, &b[from..from + 4]));
            let boundary = !b.get(at).is_some_and(u8::is_ascii_alphanumeric);
            groups.set(next, from..at, &sums, head, boundary);
            // Past the single space.
            at += 1;
            while start < next && sums.chars - groups.chars_before(start) > MAX_IBAN as u64 {
                start = groups.decide(start, next, found);
            }
            next += 1;
        } else {
            start = groups.decide(start, next, found);
        }
    }
}

/// Whether an IBAN can start at `at`: two capitals and two digits, after a byte that is not a
/// letter or digit.
fn iban_head(b: &[u8], at: usize) -> bool {
    b.get(at..at + 4).is_some_and(|head| {
        head[0].is_ascii_uppercase()
            && head[1].is_ascii_uppercase()
            && head[2].is_ascii_digit()
            && head[3].is_ascii_digit()
    }) && (at == 0 || !b[at - 1].is_ascii_alphanumeric())
}

/// The fewest and most characters of an IBAN.
const MIN_IBAN: usize = 15;
const MAX_IBAN: usize = 34;

/// Groups kept: a power of two above the 35 a window and its look-ahead can span.
const IBAN_GROUPS: usize = 64;

/// The last groups of a run, by number mod [`IBAN_GROUPS`], as arrays of plain values.
struct IbanGroups {
    starts: [usize; IBAN_GROUPS],
    ends: [usize; IBAN_GROUPS],
    /// Characters of the run up to the end of each group.
    chars: [u64; IBAN_GROUPS],
    /// What the check needs of each group's end.
    end_values: [IbanEnd; IBAN_GROUPS],
    /// What an IBAN starting at the group needs, if one can.
    heads: [Option<IbanHead>; IBAN_GROUPS],
    /// No letter or digit follows the group: an IBAN can end there.
    boundaries: [bool; IBAN_GROUPS],
}

impl Default for IbanGroups {
    fn default() -> Self {
        Self {
            starts: [0; IBAN_GROUPS],
            ends: [0; IBAN_GROUPS],
            chars: [0; IBAN_GROUPS],
            end_values: [IbanEnd::default(); IBAN_GROUPS],
            heads: [None; IBAN_GROUPS],
            boundaries: [false; IBAN_GROUPS],
        }
    }
}

impl IbanGroups {
    fn set(
        &mut self,
        number: usize,
        bytes: Range<usize>,
        after: &Mod97,
        head: Option<IbanHead>,
        boundary: bool,
    ) {
        let slot = number % IBAN_GROUPS;
        self.starts[slot] = bytes.start;
        self.ends[slot] = bytes.end;
        self.chars[slot] = after.chars;
        self.end_values[slot] = after.end();
        self.heads[slot] = head;
        self.boundaries[slot] = boundary;
    }

    /// Characters of the run before group `number`.
    fn chars_before(&self, number: usize) -> u64 {
        number
            .checked_sub(1)
            .map_or(0, |previous| self.chars[previous % IBAN_GROUPS])
    }

    /// Finds the longest IBAN starting at group `start`, given the groups read up to `next`
    /// (all within reach); returns the next start.
    fn decide(&self, start: usize, next: usize, found: &mut Vec<Range<usize>>) -> usize {
        let Some(head) = self.heads[start % IBAN_GROUPS] else {
            return start + 1;
        };
        let before = self.chars_before(start);
        for end in (start..next).rev() {
            let slot = end % IBAN_GROUPS;
            let chars = self.chars[slot] - before;
            if chars < MIN_IBAN as u64 {
                break;
            }
            // Only the start group itself can be longer than an IBAN.
            if chars > MAX_IBAN as u64 {
                continue;
            }
            step(1);
            if self.boundaries[slot] && head.passes(&self.end_values[slot]) {
                found.push(self.starts[start % IBAN_GROUPS]..self.ends[slot]);
                return end + 1;
            }
        }
        start + 1
    }
}

/// The start of a candidate IBAN: its first four characters, moved to the end by the check.
///
/// With `N(x) = R(x) * 10^-E(x)` (the run's remainder `R` and decimal digits `E` up to `x`),
/// the characters from the fifth (`f`) up to an end (`e`) are worth `10^E(e) * (N(e) - N(f))`,
/// and the rearranged number `rest * 10^6 + V` (the four characters, six digits, worth `V`)
/// leaves 1 exactly when `N(e) = N(f) + (1 - V) * 10^-(E(e) + 6)`: one multiplication per
/// end tried, with `N(e)` and `10^-(E(e) + 6)` computed once per group ([`IbanEnd`]).
#[derive(Clone, Copy, Debug, Default)]
struct IbanHead {
    /// `N` up to the fifth character.
    norm: u32,
    /// `1 - V` mod 97.
    factor: u32,
}

impl IbanHead {
    fn new(fifth: &Mod97, first_four: &[u8]) -> Self {
        let value = first_four.iter().fold(0, |rem, &c| mod97_push(rem, c));
        Self {
            norm: fifth.norm(),
            factor: (1 + 97 - value) % 97,
        }
    }

    /// Whether the characters from the fifth up to `end`, followed by the first four, leave
    /// remainder 1 (ISO 13616).
    fn passes(&self, end: &IbanEnd) -> bool {
        (self.factor * end.weight + self.norm) % 97 == end.norm
    }
}

/// What the check needs of a group's end: `N` there and `10^-(E + 6)`.
#[derive(Clone, Copy, Debug, Default)]
struct IbanEnd {
    norm: u32,
    weight: u32,
}

/// The running remainder mod 97 of a run's characters read as one number (a letter stands for
/// the two digits 10-35), with how many characters and decimal digits it holds.
#[derive(Clone, Copy, Debug, Default)]
struct Mod97 {
    rem: u32,
    chars: u64,
    /// Decimal digits.
    digits: u64,
}

impl Mod97 {
    fn push(&mut self, c: u8) {
        self.rem = mod97_push(self.rem, c);
        self.chars += 1;
        self.digits += if c.is_ascii_digit() { 1 } else { 2 };
    }

    /// `rem * 10^-digits` mod 97.
    fn norm(&self) -> u32 {
        self.rem * inverse_pow10(self.digits) % 97
    }

    fn end(&self) -> IbanEnd {
        IbanEnd {
            norm: self.norm(),
            weight: inverse_pow10(self.digits + 6),
        }
    }
}

/// 10^-n mod 97 (10^96 = 1 mod 97).
fn inverse_pow10(n: u64) -> u32 {
    POW10_MOD97[((96 - n % 96) % 96) as usize]
}

/// 10^i mod 97.
const POW10_MOD97: [u32; 96] = {
    let mut table = [1u32; 96];
    let mut i = 1;
    while i < 96 {
        table[i] = table[i - 1] * 10 % 97;
        i += 1;
    }
    table
};

/// The remainder mod 97 of the number so far followed by `c` (ISO 13616: a letter stands for
/// the two digits 10-35).
fn mod97_push(rem: u32, c: u8) -> u32 {
    if c.is_ascii_digit() {
        (rem * 10 + u32::from(c - b'0')) % 97
    } else {
        (rem * 100 + u32::from(c - b'A') + 10) % 97
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::cell::Cell;

    thread_local! {
        /// Bytes read by the detectors' inner scans on this thread (see [`step`]).
        pub(super) static STEPS: Cell<u64> = const { Cell::new(0) };
    }

    /// The steps `find` takes over `text`.
    fn steps(d: &dyn Detector, text: &str) -> u64 {
        STEPS.with(|s| s.set(0));
        d.find(text, &mut Vec::new());
        STEPS.with(Cell::get)
    }

    fn detectors() -> [&'static dyn Detector; 5] {
        [&CardNumber, &Jwt, &KnownApiKey, &Email, &Iban]
    }

    /// Units that repeated make the worst inputs known for each detector: digit groups that
    /// never or always pass Luhn, `eyJ` runs with and without dots, `@` and `.` runs, IBAN-like
    /// groups, key prefixes that fall just short.
    const HOSTILE_UNITS: &[&str] = &[
        "1-",
        "1 ",
        "4111-",
        "0",
        "eyJ",
        "eyJ.",
        "eyJa.",
        "eyJaaaaaaaa.b.",
        "a@",
        "a@b.",
        ".@",
        "DE89 ",
        "AA11 ",
        "AKIA",
        "ghp_a",
        "Bearer ",
        "xoxb-",
    ];

    proptest! {
        /// Doubling the input at most doubles the work (plus a little for the ends), whatever
        /// the unit repeated: counted in bytes read, not in time.
        #[test]
        fn work_grows_linearly(
            unit in prop_oneof![
                proptest::sample::select(HOSTILE_UNITS).prop_map(str::to_owned),
                "[0-9 .@eyJA-Z_-]{1,6}",
            ],
            times in 200usize..400,
        ) {
            let once = unit.repeat(times);
            let twice = unit.repeat(times * 2);
            for d in detectors() {
                let (a, b) = (steps(d, &once), steps(d, &twice));
                prop_assert!(
                    b <= a * 5 / 2 + 64,
                    "{}: {a} steps for {} bytes, {b} for twice that", d.name(), once.len()
                );
                // And a small constant per byte.
                prop_assert!(b <= 64 * twice.len() as u64, "{}: {b} steps for {} bytes", d.name(), twice.len());
            }
        }

        /// The linear scanners find exactly what the quadratic and cubic ones they replaced found.
        #[test]
        fn linear_scanners_find_what_the_old_ones_found(text in "[0-9 -]{0,120}") {
            let mut found = Vec::new();
            CardNumber.find(&text, &mut found);
            prop_assert_eq!(found, reference::cards(&text));
        }

        #[test]
        fn linear_jwt_scanner_finds_what_the_old_one_found(text in "(eyJ|[a-z]{1,9}|\\.| ){0,30}") {
            let mut found = Vec::new();
            Jwt.find(&text, &mut found);
            prop_assert_eq!(found, reference::jwts(&text));
        }

        #[test]
        fn linear_iban_scanner_finds_what_the_old_one_found(
            text in "((DE89|GB82|[A-Z]{2}[0-9]{2}) |3704 |0044 |0532 |0130 |00 |WEST|[0-9]{1,4}){0,12}"
        ) {
            let mut found = Vec::new();
            Iban.find(&text, &mut found);
            prop_assert_eq!(found, reference::ibans(&text));
        }
    }

    /// Single groups longer than an IBAN are never one (about 1 in 97 would pass mod 97).
    #[test]
    fn long_groups_are_not_ibans() {
        for n in 0..2000u64 {
            let text = format!("DE{:02}{:032} x", n % 100, n * 7919 + 1);
            let mut found = Vec::new();
            Iban.find(&text, &mut found);
            assert_eq!(found, reference::ibans(&text), "{text}");
            assert!(found.is_empty(), "{text}");
        }
    }

    #[test]
    fn luhn_carried_forward_equals_luhn_recomputed() {
        for n in 0..100_000u64 {
            let digits = (n * 7919 + 104_729).to_string();
            let mut sums = LuhnSums::default();
            "123".bytes().for_each(|d| sums.push(d));
            let before = sums;
            digits.bytes().for_each(|d| sums.push(d));
            let digits: Vec<u8> = digits.bytes().map(|d| d - b'0').collect();
            assert_eq!(
                sums.valid_since(&before),
                reference::luhn(&digits),
                "{digits:?}"
            );
        }
    }

    #[test]
    fn the_inputs_that_were_cubic_or_quadratic_take_linear_steps() {
        // 4 KiB of `1-1-1-...` and `eyJeyJ...`: seconds of CPU each before.
        for (d, text) in [
            (&CardNumber as &dyn Detector, "1-".repeat(2048)),
            (&CardNumber, "1 ".repeat(2048)),
            (&Jwt, "eyJ".repeat(1400)),
            (&Jwt, "eyJ.".repeat(1024)),
        ] {
            let steps = steps(d, &text);
            assert!(steps <= 40 * text.len() as u64, "{}: {steps}", d.name());
        }
    }

    /// The scanners as they were before they were made linear, to check the new ones against.
    mod reference {
        use std::ops::Range;

        pub(super) fn luhn(digits: &[u8]) -> bool {
            let mut sum = 0u32;
            for (n, &d) in digits.iter().rev().enumerate() {
                let d = u32::from(d);
                sum += if n % 2 == 1 {
                    if d * 2 > 9 { d * 2 - 9 } else { d * 2 }
                } else {
                    d
                };
            }
            sum.is_multiple_of(10)
        }

        pub(super) fn cards(text: &str) -> Vec<Range<usize>> {
            let b = text.as_bytes();
            let mut found = Vec::new();
            if b.len() < 13 || b.iter().filter(|c| c.is_ascii_digit()).count() < 13 {
                return found;
            }
            let mut i = 0;
            while i < b.len() {
                if !b[i].is_ascii_digit() {
                    i += 1;
                    continue;
                }
                let mut j = i;
                let mut digits = 0usize;
                loop {
                    while b.get(j).is_some_and(u8::is_ascii_digit) {
                        j += 1;
                        digits += 1;
                    }
                    match b.get(j) {
                        Some(b' ' | b'-') if b.get(j + 1).is_some_and(u8::is_ascii_digit) => j += 1,
                        _ => break,
                    }
                }
                if digits >= 13 {
                    let groups: Vec<(usize, usize)> = b[i..j]
                        .split(|c| !c.is_ascii_digit())
                        .scan(i, |at, group| {
                            let start = *at;
                            *at += group.len() + 1;
                            Some((start, start + group.len()))
                        })
                        .collect();
                    find_cards(b, &groups, &mut found);
                }
                i = j.max(i + 1);
            }
            found
        }

        fn find_cards(b: &[u8], groups: &[(usize, usize)], found: &mut Vec<Range<usize>>) {
            let digits_in = |from: usize, to: usize| -> Vec<u8> {
                b[from..to]
                    .iter()
                    .filter(|d| d.is_ascii_digit())
                    .map(|d| d - b'0')
                    .collect()
            };
            let mut s = 0;
            while s < groups.len() {
                let mut matched = None;
                for e in (s..groups.len()).rev() {
                    let digits = digits_in(groups[s].0, groups[e].1);
                    if (13..=19).contains(&digits.len()) && luhn(&digits) {
                        matched = Some(e);
                        break;
                    }
                }
                match matched {
                    Some(e) => {
                        found.push(groups[s].0..groups[e].1);
                        s = e + 1;
                    }
                    None => {
                        let (start, end) = groups[s];
                        let run = &b[start..end];
                        if (20..=32).contains(&run.len())
                            && run.iter().any(|d| *d != run[0])
                            && (13..=19).any(|len| luhn(&digits_in(start, start + len)))
                        {
                            found.push(start..end);
                        }
                        s += 1;
                    }
                }
            }
        }

        pub(super) fn jwts(text: &str) -> Vec<Range<usize>> {
            let b = text.as_bytes();
            let mut found = Vec::new();
            if b.len() < 21 {
                return found;
            }
            let mut from = 0;
            while let Some(at) = memchr::memmem::find(&b[from..], b"eyJ") {
                let start = from + at;
                let mut j = start;
                let mut segments = 1;
                let mut header = usize::MAX;
                let mut later_content = false;
                let mut segment_start = j;
                while j < b.len() {
                    if super::is_b64url(b[j]) {
                        j += 1;
                    } else if b[j] == b'.' && segments < 5 {
                        if segments == 1 {
                            header = j - segment_start;
                        } else if j > segment_start {
                            later_content = true;
                        }
                        segments += 1;
                        j += 1;
                        segment_start = j;
                    } else {
                        break;
                    }
                }
                later_content |= j > segment_start && segments > 1;
                if segments >= 3 && header != usize::MAX && header >= 8 && later_content {
                    found.push(start..j);
                    from = j;
                } else {
                    from = start + 3;
                }
                if from >= b.len() {
                    break;
                }
            }
            found
        }

        fn mod97(chars: &[u8]) -> bool {
            let mut rem = 0u32;
            for &c in chars[4..].iter().chain(&chars[..4]) {
                if c.is_ascii_digit() {
                    rem = (rem * 10 + u32::from(c - b'0')) % 97;
                } else {
                    rem = (rem * 100 + u32::from(c - b'A') + 10) % 97;
                }
            }
            rem == 1
        }

        pub(super) fn ibans(text: &str) -> Vec<Range<usize>> {
            let b = text.as_bytes();
            let mut found = Vec::new();
            let upper_alnum = |c: u8| c.is_ascii_uppercase() || c.is_ascii_digit();
            if b.len() < 15 || b.iter().filter(|&&c| upper_alnum(c)).count() < 15 {
                return found;
            }
            let mut i = 0;
            while i + 4 <= b.len() {
                let starts = b[i].is_ascii_uppercase()
                    && b[i + 1].is_ascii_uppercase()
                    && b[i + 2].is_ascii_digit()
                    && b[i + 3].is_ascii_digit()
                    && (i == 0 || !b[i - 1].is_ascii_alphanumeric());
                if !starts {
                    i += 1;
                    continue;
                }
                let mut chars = Vec::with_capacity(34);
                let mut ends = Vec::with_capacity(34);
                let mut j = i;
                while chars.len() < 34 {
                    match b.get(j) {
                        Some(&c) if upper_alnum(c) => {
                            chars.push(c);
                            j += 1;
                            ends.push(j);
                        }
                        Some(b' ') if b.get(j + 1).is_some_and(|&c| upper_alnum(c)) => j += 1,
                        _ => break,
                    }
                }
                let hit = (15..=chars.len()).rev().find(|&n| {
                    let boundary = !b
                        .get(ends[n - 1])
                        .is_some_and(|&c| c.is_ascii_alphanumeric());
                    boundary && mod97(&chars[..n])
                });
                match hit {
                    Some(n) => {
                        found.push(i..ends[n - 1]);
                        i = ends[n - 1];
                    }
                    None => i += 1,
                }
            }
            found
        }
    }

    fn hits(d: &dyn Detector, text: &str) -> Vec<String> {
        let mut found = Vec::new();
        d.find(text, &mut found);
        found.into_iter().map(|r| text[r].to_owned()).collect()
    }

    #[test]
    fn cards_need_luhn() {
        assert_eq!(
            hits(&CardNumber, "card 4111 1111 1111 1111."),
            ["4111 1111 1111 1111"]
        );
        assert_eq!(
            hits(&CardNumber, "x5500-0000-0000-0004"),
            ["5500-0000-0000-0004"]
        );
        assert!(hits(&CardNumber, "4111111111111112").is_empty());
        assert!(hits(&CardNumber, "call 555 1234").is_empty());
    }

    #[test]
    fn a_card_with_a_glued_expiry_is_masked_whole_and_long_digit_runs_are_not_cards() {
        assert_eq!(
            hits(&CardNumber, "41111111111111111227"),
            ["41111111111111111227"]
        );
        // A card with a date glued on: the whole run.
        assert_eq!(
            hits(&CardNumber, "411111111111111120261231"),
            ["411111111111111120261231"]
        );
        // Hashes and padding: Luhn-valid windows inside, but not card numbers.
        assert!(hits(&CardNumber, &"8".repeat(28)).is_empty());
        assert!(hits(&CardNumber, &"0".repeat(64)).is_empty());
    }

    #[test]
    fn jwts_api_keys_emails_ibans() {
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln";
        assert_eq!(hits(&Jwt, &format!("t={jwt};")), [jwt]);
        assert!(hits(&Jwt, "eyJ alone").is_empty());
        assert_eq!(
            hits(&KnownApiKey, "id AKIAIOSFODNN7EXAMPLE!"),
            ["AKIAIOSFODNN7EXAMPLE"]
        );
        let gh = format!("ghp_{}", "a1".repeat(18));
        assert_eq!(hits(&KnownApiKey, &format!("({gh})")), [gh.as_str()]);
        assert_eq!(
            hits(&KnownApiKey, "Authorization: Bearer abc.def-ghi"),
            ["abc.def-ghi"]
        );
        assert_eq!(
            hits(&KnownApiKey, "AUTHORIZATION: BEARER abc.def-ghi"),
            ["abc.def-ghi"]
        );
        assert!(hits(&KnownApiKey, "akiaiosfodnn7example").is_empty());
        assert!(hits(&KnownApiKey, "GHP_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa").is_empty());
        assert_eq!(
            hits(&Email, "mail a.b+c@ex-ample.co.uk."),
            ["a.b+c@ex-ample.co.uk"]
        );
        assert!(hits(&Email, "@ a@b user@localhost").is_empty());
        assert_eq!(
            hits(&Iban, "IBAN DE89 3704 0044 0532 0130 00 ok"),
            ["DE89 3704 0044 0532 0130 00"]
        );
        assert_eq!(
            hits(&Iban, "GB82WEST12345698765432"),
            ["GB82WEST12345698765432"]
        );
        assert!(hits(&Iban, "DE89370400440532013001").is_empty());
    }
}
