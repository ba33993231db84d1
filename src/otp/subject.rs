//! Canonical subjects: one spelling per person, so budgets count people.

use crate::Error;

/// Separators people type inside phone numbers, dropped by
/// [`canonical_phone`].
const SEPARATORS: &[char] = &[' ', '-', '.', '(', ')', '/', '\u{a0}'];

/// A phone number in international form, rewritten as E.164: `+`, the
/// country code and the subscriber number, digits only.
///
/// Use it on every subject that is a phone number before
/// [`Otp::issue`](super::Otp::issue) and [`Otp::check`](super::Otp::check):
/// budgets are counted per subject string, so `+1 555 010 0199`,
/// `+1-555-010-0199` and `001 (555) 0100199` must be one subject.
///
/// # Parameters
///
/// `input`: a number that starts with `+` or with the international prefix
/// `00`, then 7 to 15 digits (the first not `0`), with spaces, `-`, `.`,
/// `/`, non-breaking spaces and parentheses anywhere after the prefix. A
/// trunk prefix written `(0)` (`+44 (0)20 7946 0958`), which is not dialed
/// from abroad, is dropped.
///
/// # Errors
///
/// [`Error::InvalidPhoneNumber`] for anything else, including national
/// forms (`(555) 010-0199`, `0171 1234567`): turning those into E.164 needs
/// the caller's country and its numbering plan, which is the job of a
/// phone-number library. The error does not echo the input.
///
/// # Example
///
/// ```
/// use pinseal::otp::canonical_phone;
///
/// assert_eq!(canonical_phone("+1 (555) 010-0199")?, "+15550100199");
/// assert_eq!(canonical_phone("0044 20 7946 0958")?, "+442079460958");
/// assert_eq!(canonical_phone("+44 (0)20 7946 0958")?, "+442079460958");
/// assert!(canonical_phone("555-0199").is_err()); // no country code
/// # Ok::<(), pinseal::Error>(())
/// ```
pub fn canonical_phone(input: &str) -> Result<String, Error> {
    let trimmed = input.trim();
    let rest = trimmed
        .strip_prefix('+')
        .or_else(|| trimmed.strip_prefix("00"))
        .ok_or(Error::InvalidPhoneNumber)?;
    let mut out = String::with_capacity(16);
    out.push('+');
    // "(0)": the national trunk prefix, shown for callers at home only.
    let rest = rest.replace("(0)", " ");
    for c in rest.chars() {
        if c.is_ascii_digit() {
            out.push(c);
        } else if !SEPARATORS.contains(&c) {
            return Err(Error::InvalidPhoneNumber);
        }
    }
    let digits = out.len() - 1;
    if !(7..=15).contains(&digits) || out.as_bytes()[1] == b'0' {
        return Err(Error::InvalidPhoneNumber);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_of_one_number_are_one_subject() {
        let spellings = [
            "+15550100199",
            "+1 555 010 0199",
            "+1-555-010-0199",
            "+1 (555) 010-0199",
            "+1.555.010.0199",
            "001 555 010 0199",
            "  +1 555/010/0199\n",
            "+1\u{a0}555\u{a0}0100199",
        ];
        for s in spellings {
            assert_eq!(canonical_phone(s).unwrap(), "+15550100199", "{s:?}");
        }
    }

    #[test]
    fn a_trunk_zero_in_parentheses_is_not_part_of_the_number() {
        for s in [
            "+44 (0)20 7946 0958",
            "+44(0)2079460958",
            "0044 (0) 20 7946 0958",
            "+44 20 7946 0958",
        ] {
            assert_eq!(canonical_phone(s).unwrap(), "+442079460958", "{s:?}");
        }
        // A zero that is written without parentheses is a digit.
        assert_eq!(
            canonical_phone("+39 06 1234 5678").unwrap(),
            "+390612345678"
        );
    }

    #[test]
    fn refuses_what_is_not_an_international_number() {
        for s in [
            "",
            "+",
            "5550100199",
            "(555) 010-0199",
            "0171 1234567",
            "+0 555 010 0199",
            "+1 555 010 0199 ext 7",
            "+1555010019912345", // 16 digits
            "+123456",           // 6 digits
            "+1 555 O10 0199",   // letter O
            "+١٥٥٥٠١٠٠١٩٩",      // non-ASCII digits
            "++15550100199",
            "+1+5550100199",
        ] {
            assert_eq!(
                canonical_phone(s).err(),
                Some(Error::InvalidPhoneNumber),
                "{s:?}"
            );
        }
    }
}
