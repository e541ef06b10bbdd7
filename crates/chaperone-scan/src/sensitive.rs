//! Sensitive data that is not a credential: payment card numbers, IBANs and US Social
//! Security numbers. Each candidate is validated the way the issuer validates it, so that
//! order numbers, phone numbers and timestamps do not pass:
//!
//! - **Cards**: 13 to 19 digits (optionally in groups split by single spaces or dashes),
//!   within a known issuer's range and length, passing the Luhn check; the published test
//!   numbers of the card networks are ignored.
//! - **IBANs**: a country code, two check digits and the country's exact length (ISO 13616,
//!   the SWIFT IBAN registry), passing the mod-97 check.
//! - **SSNs**: `AAA-GG-SSSS` with the ranges the SSA never issues excluded (area 000, 666
//!   and 900-999, group 00, serial 0000) and the numbers famous from advertising.
//!
//! Values are redacted in every output, like secrets.

/// One detection in a line: the detector's id and the value's byte range.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Detection {
    pub(crate) kind: Kind,
    pub(crate) start: usize,
    pub(crate) end: usize,
}

/// What was detected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A payment card number.
    Card,
    /// An International Bank Account Number.
    Iban,
    /// A US Social Security number.
    Ssn,
}

impl Kind {
    /// Every detector.
    pub(crate) const ALL: [Kind; 3] = [Kind::Card, Kind::Iban, Kind::Ssn];

    /// The id findings carry, as a rule's would (and that `disable` lists name).
    pub(crate) fn id(self) -> &'static str {
        match self {
            Kind::Card => "payment-card-number",
            Kind::Iban => "iban",
            Kind::Ssn => "us-social-security-number",
        }
    }

    /// What it is.
    pub(crate) fn description(self) -> &'static str {
        match self {
            Kind::Card => "Payment card number (issuer range and Luhn check)",
            Kind::Iban => "IBAN (country length and mod-97 check)",
            Kind::Ssn => "US Social Security number (issued ranges)",
        }
    }
}

/// Every valid card number, IBAN and SSN in `line`.
pub(crate) fn detect(line: &[u8]) -> Vec<Detection> {
    let mut out = Vec::new();
    cards(line, &mut out);
    ibans(line, &mut out);
    ssns(line, &mut out);
    out
}

fn boundary(line: &[u8], at: usize) -> bool {
    line.get(at).is_none_or(|b| !b.is_ascii_alphanumeric())
}

fn cards(line: &[u8], out: &mut Vec<Detection>) {
    let mut i = 0;
    while i < line.len() {
        if !line[i].is_ascii_digit() || (i > 0 && line[i - 1].is_ascii_alphanumeric()) {
            i += 1;
            continue;
        }
        // Digits, allowing single spaces or dashes between groups.
        let mut digits = Vec::new();
        let mut j = i;
        let mut end = i;
        while j < line.len() && digits.len() < 19 {
            let b = line[j];
            if b.is_ascii_digit() {
                digits.push(b - b'0');
                j += 1;
                end = j;
            } else if (b == b' ' || b == b'-')
                && line.get(j + 1).is_some_and(u8::is_ascii_digit)
                && j > i
            {
                j += 1;
            } else {
                break;
            }
        }
        if (13..=19).contains(&digits.len())
            && boundary(line, end)
            && !line.get(end).is_some_and(u8::is_ascii_digit)
            && issuer(&digits)
            && luhn(&digits)
            && !is_test_card(&digits)
        {
            out.push(Detection {
                kind: Kind::Card,
                start: i,
                end,
            });
            i = end;
        } else {
            // Skip the rest of this run of digits.
            while i < line.len() && line[i].is_ascii_digit() {
                i += 1;
            }
        }
    }
}

/// The Luhn (mod 10) check.
pub(crate) fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(k, &d)| {
            let d = u32::from(d);
            if k % 2 == 1 {
                let twice = d * 2;
                if twice > 9 { twice - 9 } else { twice }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

fn prefix(digits: &[u8], n: usize) -> u32 {
    digits
        .iter()
        .take(n)
        .fold(0, |acc, &d| acc * 10 + u32::from(d))
}

/// Whether the number lies in a card network's range, with one of its lengths.
fn issuer(digits: &[u8]) -> bool {
    let len = digits.len();
    let p1 = prefix(digits, 1);
    let p2 = prefix(digits, 2);
    let p3 = prefix(digits, 3);
    let p4 = prefix(digits, 4);
    // Visa.
    (p1 == 4 && matches!(len, 13 | 16 | 19))
        // Mastercard.
        || ((51..=55).contains(&p2) || (2221..=2720).contains(&p4)) && len == 16
        // American Express.
        || matches!(p2, 34 | 37) && len == 15
        // Discover.
        || (p4 == 6011 || (644..=649).contains(&p3) || p2 == 65) && (16..=19).contains(&len)
        // JCB.
        || (3528..=3589).contains(&p4) && (16..=19).contains(&len)
        // Diners Club.
        || ((300..=305).contains(&p3) || matches!(p2, 36 | 38 | 39)) && (14..=19).contains(&len)
        // UnionPay.
        || p2 == 62 && (16..=19).contains(&len)
}

/// The card networks' published test numbers: in code they are fixtures, not card data.
fn is_test_card(digits: &[u8]) -> bool {
    const TEST: [&str; 14] = [
        "4111111111111111",
        "4242424242424242",
        "4012888888881881",
        "4000056655665556",
        "4222222222222",
        "5555555555554444",
        "5105105105105100",
        "2223003122003222",
        "378282246310005",
        "371449635398431",
        "6011111111111117",
        "6011000990139424",
        "3530111333300000",
        "30569309025904",
    ];
    let text: String = digits.iter().map(|d| char::from(b'0' + d)).collect();
    TEST.contains(&text.as_str())
}

/// IBAN lengths by country (SWIFT IBAN registry).
const IBAN_LENGTHS: &[(&str, usize)] = &[
    ("AD", 24),
    ("AE", 23),
    ("AL", 28),
    ("AT", 20),
    ("AZ", 28),
    ("BA", 20),
    ("BE", 16),
    ("BG", 22),
    ("BH", 22),
    ("BR", 29),
    ("BY", 28),
    ("CH", 21),
    ("CR", 22),
    ("CY", 28),
    ("CZ", 24),
    ("DE", 22),
    ("DK", 18),
    ("DO", 28),
    ("EE", 20),
    ("EG", 29),
    ("ES", 24),
    ("FI", 18),
    ("FO", 18),
    ("FR", 27),
    ("GB", 22),
    ("GE", 22),
    ("GI", 23),
    ("GL", 18),
    ("GR", 27),
    ("GT", 28),
    ("HR", 21),
    ("HU", 28),
    ("IE", 22),
    ("IL", 23),
    ("IQ", 23),
    ("IS", 26),
    ("IT", 27),
    ("JO", 30),
    ("KW", 30),
    ("KZ", 20),
    ("LB", 28),
    ("LC", 32),
    ("LI", 21),
    ("LT", 20),
    ("LU", 20),
    ("LV", 21),
    ("MC", 27),
    ("MD", 24),
    ("ME", 22),
    ("MK", 19),
    ("MR", 27),
    ("MT", 31),
    ("MU", 30),
    ("NL", 18),
    ("NO", 15),
    ("PK", 24),
    ("PL", 28),
    ("PS", 29),
    ("PT", 25),
    ("QA", 29),
    ("RO", 24),
    ("RS", 22),
    ("SA", 24),
    ("SC", 31),
    ("SE", 24),
    ("SI", 19),
    ("SK", 24),
    ("SM", 27),
    ("ST", 25),
    ("SV", 28),
    ("TL", 23),
    ("TN", 24),
    ("TR", 26),
    ("UA", 29),
    ("VA", 22),
    ("VG", 24),
    ("XK", 20),
];

fn ibans(line: &[u8], out: &mut Vec<Detection>) {
    let mut i = 0;
    while i + 4 <= line.len() {
        let starts = line[i].is_ascii_uppercase()
            && line[i + 1].is_ascii_uppercase()
            && line[i + 2].is_ascii_digit()
            && line[i + 3].is_ascii_digit()
            && (i == 0 || !line[i - 1].is_ascii_alphanumeric());
        let expected = starts
            .then(|| {
                let country = std::str::from_utf8(&line[i..i + 2]).unwrap_or("");
                IBAN_LENGTHS
                    .iter()
                    .find(|(c, _)| *c == country)
                    .map(|(_, n)| *n)
            })
            .flatten();
        let Some(expected) = expected else {
            i += 1;
            continue;
        };
        // Take alphanumerics, allowing single spaces between groups, up to the length.
        let mut chars = Vec::new();
        let mut j = i;
        let mut end = i;
        while j < line.len() && chars.len() < expected {
            let b = line[j];
            if b.is_ascii_alphanumeric() {
                chars.push(b.to_ascii_uppercase());
                j += 1;
                end = j;
            } else if b == b' ' && line.get(j + 1).is_some_and(u8::is_ascii_alphanumeric) {
                j += 1;
            } else {
                break;
            }
        }
        if chars.len() == expected && boundary(line, end) && mod97(&chars) == 1 {
            out.push(Detection {
                kind: Kind::Iban,
                start: i,
                end,
            });
            i = end;
        } else {
            i += 1;
        }
    }
}

/// ISO 7064 mod 97-10 of an IBAN (the first four characters moved to the end, letters as
/// 10 to 35).
pub(crate) fn mod97(iban: &[u8]) -> u32 {
    let rotated = iban[4..].iter().chain(&iban[..4]);
    let mut rest = 0u32;
    for &c in rotated {
        let value = if c.is_ascii_digit() {
            u32::from(c - b'0')
        } else {
            u32::from(c - b'A') + 10
        };
        rest = if value >= 10 {
            (rest * 100 + value) % 97
        } else {
            (rest * 10 + value) % 97
        };
    }
    rest
}

fn ssns(line: &[u8], out: &mut Vec<Detection>) {
    if line.len() < 11 {
        return;
    }
    for i in 0..=line.len() - 11 {
        let w = &line[i..i + 11];
        let shape = w.iter().enumerate().all(|(k, b)| match k {
            3 | 6 => *b == b'-',
            _ => b.is_ascii_digit(),
        });
        if !shape
            || (i > 0 && (line[i - 1].is_ascii_alphanumeric() || line[i - 1] == b'-'))
            || line
                .get(i + 11)
                .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'-')
        {
            continue;
        }
        let num = |a: usize, b: usize| {
            w[a..b]
                .iter()
                .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'))
        };
        let (area, group, serial) = (num(0, 3), num(4, 6), num(7, 11));
        let issued = area != 0
            && area != 666
            && area < 900
            && group != 0
            && serial != 0
            && !matches!((area, group, serial), (78, 5, 1120) | (219, 9, 9999));
        if issued {
            out.push(Detection {
                kind: Kind::Ssn,
                start: i,
                end: i + 11,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<(Kind, String)> {
        detect(text.as_bytes())
            .into_iter()
            .map(|d| (d.kind, text[d.start..d.end].to_owned()))
            .collect()
    }

    #[test]
    fn cards_need_an_issuer_range_and_the_luhn_check() {
        // Real-format numbers (Luhn-valid, not the networks' test numbers).
        assert_eq!(
            kinds("card=4539 1488 0343 6467;"),
            [(Kind::Card, "4539 1488 0343 6467".into())]
        );
        assert_eq!(
            kinds("amex 3782-822463-10013 x"),
            [(Kind::Card, "3782-822463-10013".into())]
        );
        assert_eq!(
            kinds("mc: 5425233430109903"),
            [(Kind::Card, "5425233430109903".into())]
        );
        for not in [
            "4539148803436468",           // Luhn fails
            "1234567812345670",           // no issuer starts with 1
            "order 45391488034364670001", // longer run
            "4111111111111111",           // a network's test number
            "ts=1764098115123456789",
            "id4539148803436467", // glued to letters
        ] {
            assert!(kinds(not).is_empty(), "{not}");
        }
        assert!(luhn(&[7, 9, 9, 2, 7, 3, 9, 8, 7, 1, 3]));
    }

    #[test]
    fn ibans_need_the_country_length_and_mod_97() {
        assert_eq!(
            kinds("IBAN: DE89 3704 0044 0532 0130 00."),
            [(Kind::Iban, "DE89 3704 0044 0532 0130 00".into())]
        );
        assert_eq!(
            kinds("iban=GB82WEST12345698765432"),
            [(Kind::Iban, "GB82WEST12345698765432".into())]
        );
        for not in [
            "DE89 3704 0044 0532 0130 01", // check fails
            "DE89370400440532013",         // too short for DE
            "XX89370400440532013000",      // no such country
        ] {
            assert!(kinds(not).is_empty(), "{not}");
        }
    }

    #[test]
    fn ssns_exclude_ranges_never_issued() {
        assert_eq!(
            kinds("ssn 536-22-8709"),
            [(Kind::Ssn, "536-22-8709".into())]
        );
        for not in [
            "000-12-3456",
            "666-12-3456",
            "912-12-3456",
            "536-00-8709",
            "536-22-0000",
            "078-05-1120",
            "1536-22-8709",
            "536-22-87091",
            "phone 555-123-4567",
        ] {
            assert!(kinds(not).is_empty(), "{not}");
        }
    }
}
