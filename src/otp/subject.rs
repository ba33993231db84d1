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

/// A phone number in national or international form, rewritten as E.164,
/// with the numbering plans of Google's libphonenumber (through the
/// `phonenumber` crate; feature `phonenumber`).
///
/// Where [`canonical_phone`] needs the country code, this function also
/// takes national forms: `(555) 010-0199` in region `US`, `020 7946 0958`
/// or `07700 900123` in `GB`, and drops trunk prefixes and international
/// dialing prefixes as each country writes them (`0049 30 123456`).
///
/// # Parameters
///
/// - `input`: the number as typed.
/// - `default_region`: the ISO 3166-1 alpha-2 code (`"US"`, `"GB"`) of the
///   country a national number belongs to: the caller's, or the service's.
///
/// # Errors
///
/// - [`Error::InvalidPhoneNumber`] if `input` is not a number the region's
///   plan can read, or not a possible number (too short or too long for
///   its country). The error does not echo the input.
/// - [`Error::InvalidParameter`] if `default_region` is not a region code.
///
/// Numbers that are possible but not assigned (such as the fictional
/// `555-01xx` range) are accepted: whether a number can receive a code is
/// the SMS provider's answer.
///
/// # Example
///
/// ```
/// use pinseal::otp::canonical_phone_in;
///
/// assert_eq!(canonical_phone_in("(555) 010-0199", "US")?, "+15550100199");
/// assert_eq!(canonical_phone_in("020 7946 0958", "GB")?, "+442079460958");
/// assert_eq!(canonical_phone_in("+44 (0)20 7946 0958", "US")?, "+442079460958");
/// assert!(canonical_phone_in("12", "GB").is_err());
/// # Ok::<(), pinseal::Error>(())
/// ```
#[cfg(feature = "phonenumber")]
pub fn canonical_phone_in(input: &str, default_region: &str) -> Result<String, Error> {
    let region: phonenumber::country::Id = default_region
        .parse()
        .map_err(|_| Error::InvalidParameter)?;
    // No phone number is this long, and the parser need not see more.
    if input.len() > 64 {
        return Err(Error::InvalidPhoneNumber);
    }
    // "(0)": a trunk prefix written for callers at home, never dialed from
    // abroad (the parser would keep it after a country code).
    let input = input.replace("(0)", " ");
    let number = phonenumber::parse(Some(region), &input).map_err(|_| Error::InvalidPhoneNumber)?;
    let e164 = number.format().mode(phonenumber::Mode::E164).to_string();
    // The same shape `canonical_phone` promises, and a possible length.
    canonical_phone(&e164).map_err(|_| Error::InvalidPhoneNumber)
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

    #[cfg(feature = "phonenumber")]
    #[test]
    fn national_forms_parse_with_a_default_region() {
        for (input, region, want) in [
            ("(555) 010-0199", "US", "+15550100199"),
            ("1-555-010-0199", "US", "+15550100199"),
            ("+1 555 010 0199", "GB", "+15550100199"),
            ("07700 900123", "GB", "+447700900123"),
            ("(0)20 7946 0958", "GB", "+442079460958"),
            ("030 123456", "DE", "+4930123456"),
            ("0049 30 123456", "GB", "+4930123456"),
            ("06 12 34 56 78", "FR", "+33612345678"),
        ] {
            assert_eq!(
                canonical_phone_in(input, region).unwrap(),
                want,
                "{input:?} in {region}"
            );
        }
        for bad in ["12", "not a number", "+", "0", "+1 555 010 0199 0199 0199"] {
            let err = canonical_phone_in(bad, "GB").unwrap_err();
            assert_eq!(err, Error::InvalidPhoneNumber, "{bad:?}");
        }
        assert_eq!(
            canonical_phone_in("(555) 010-0199", "Narnia").unwrap_err(),
            Error::InvalidParameter
        );
        let long = "1".repeat(65);
        assert_eq!(
            canonical_phone_in(&long, "US"),
            Err(Error::InvalidPhoneNumber)
        );
    }
}
