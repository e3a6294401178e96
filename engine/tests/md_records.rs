//! The md records: exact fixed-point numbers, the instrument table, record layout.

use proptest::prelude::*;
use spinwire_engine::md::{
    parse_u64_prefix, BookFlags, Fixed, InstrumentId, InstrumentTable, MdRecord, NumError,
    TableError, TradeFlags, FIXED_SCALE, MAX_NAME_LEN,
};

fn fx(s: &str) -> Result<i64, NumError> {
    s.parse::<Fixed>().map(Fixed::raw)
}

#[test]
fn decimal_text_parses_exactly_without_going_through_f64() {
    assert_eq!(fx("60000.5"), Ok(6_000_050_000_000));
    assert_eq!(fx("0.1"), Ok(10_000_000));
    assert_eq!(fx("0.3"), Ok(30_000_000)); // 0.1 + 0.2 != 0.3 in f64; exact here.
    assert_eq!(fx("3000.05"), Ok(300_005_000_000));
    assert_eq!(fx("0.00000001"), Ok(1));
    assert_eq!(fx("-1.5"), Ok(-150_000_000));
    assert_eq!(fx("-0"), Ok(0));
    assert_eq!(fx("0"), Ok(0));
    assert_eq!(fx("20"), Ok(20 * FIXED_SCALE));
    assert_eq!(fx("45690.0"), Ok(45_690 * FIXED_SCALE));
    assert_eq!(fx("92233720368.54775807"), Ok(i64::MAX));
    assert_eq!(fx("-92233720368.54775808"), Ok(i64::MIN));
}

#[test]
fn exponents_are_exact() {
    assert_eq!(fx("1.6e-7"), Ok(16)); // a Deribit fee
    assert_eq!(fx("1e-8"), Ok(1));
    assert_eq!(fx("1E+3"), Ok(1000 * FIXED_SCALE));
    assert_eq!(fx("6.00005e4"), Ok(6_000_050_000_000));
    assert_eq!(fx("0e999999999999"), Ok(0));
    assert_eq!(fx("12345e-8"), Ok(12_345));
    assert_eq!(fx("12345e-12"), Err(NumError::Inexact));
}

#[test]
fn values_that_do_not_fit_are_errors_never_rounded() {
    assert_eq!(fx("0.000000001"), Err(NumError::Inexact));
    assert_eq!(fx("1.6e-9"), Err(NumError::Inexact));
    assert_eq!(fx("1.7362511643080387"), Err(NumError::Inexact));
    assert_eq!(fx("12345678901.234567891"), Err(NumError::Inexact));
    assert_eq!(fx("12345678901.234567890"), Ok(1_234_567_890_123_456_789));
    assert_eq!(fx("92233720368.54775808"), Err(NumError::Overflow));
    assert_eq!(fx("-92233720368.54775809"), Err(NumError::Overflow));
    assert_eq!(fx("1e11"), Err(NumError::Overflow));
    assert_eq!(fx("1e400"), Err(NumError::Overflow));
    assert_eq!(fx("1e-400"), Err(NumError::Inexact));
    assert_eq!(
        fx("123456789012345678901234567890"),
        Err(NumError::Overflow)
    );
    // Trailing zeros past the 8th decimal are exact and fine.
    assert_eq!(fx("1.000000000000000"), Ok(FIXED_SCALE));
}

#[test]
fn malformed_numbers_are_syntax_errors() {
    for bad in [
        "", "-", "+1", ".5", "1.", "01", "1e", "1e+", "0x10", "1.5.5", "NaN", "inf", " 1", "1 ",
        "--1",
    ] {
        assert_eq!(fx(bad), Err(NumError::Syntax), "{bad:?}");
    }
}

#[test]
fn fixed_writes_the_shortest_exact_text() {
    for (raw, text) in [
        (6_000_050_000_000, "60000.5"),
        (20 * FIXED_SCALE, "20"),
        (1, "0.00000001"),
        (-150_000_000, "-1.5"),
        (0, "0"),
        (i64::MIN, "-92233720368.54775808"),
        (i64::MAX, "92233720368.54775807"),
    ] {
        assert_eq!(Fixed::from_raw(raw).to_string(), text);
        let mut small = [0u8; 3];
        if text.len() > 3 {
            assert_eq!(Fixed::from_raw(raw).write_to(&mut small), None);
        }
    }
}

#[test]
fn from_parts_scales_exactly_or_refuses() {
    assert_eq!(
        Fixed::from_parts(600_005, 1),
        Some(Fixed::from_raw(6_000_050_000_000))
    );
    assert_eq!(Fixed::from_parts(50, 3), Some(Fixed::from_raw(5_000_000)));
    assert_eq!(
        Fixed::from_parts(123_000_000_000, 11),
        Some(Fixed::from_raw(123_000_000))
    );
    assert_eq!(Fixed::from_parts(123_000_000_001, 11), None);
    assert_eq!(Fixed::from_parts(i64::MAX, 0), None);
    assert_eq!(Fixed::from_int(5), Some(Fixed::from_raw(5 * FIXED_SCALE)));
    assert_eq!(Fixed::from_int(i64::MAX / 10), None);
}

#[test]
fn unsigned_integers_refuse_fractions_signs_and_overflow() {
    assert_eq!(
        parse_u64_prefix(b"18446744073709551615,"),
        Ok((u64::MAX, 20))
    );
    assert_eq!(
        parse_u64_prefix(b"18446744073709551616"),
        Err(NumError::Overflow)
    );
    assert_eq!(parse_u64_prefix(b"12.5"), Err(NumError::NotAnInteger));
    assert_eq!(parse_u64_prefix(b"1e3"), Err(NumError::NotAnInteger));
    assert_eq!(parse_u64_prefix(b"-1"), Err(NumError::NotAnInteger));
    assert_eq!(parse_u64_prefix(b"1."), Err(NumError::Syntax));
    assert_eq!(parse_u64_prefix(b"x"), Err(NumError::Syntax));
    assert_eq!(parse_u64_prefix(b"0"), Ok((0, 1)));
}

proptest! {
    #[test]
    fn any_fixed_survives_a_text_round_trip(raw in any::<i64>()) {
        let f = Fixed::from_raw(raw);
        prop_assert_eq!(f.to_string().parse::<Fixed>(), Ok(f));
    }

    #[test]
    fn parsing_agrees_with_integer_arithmetic(int in -92_233_720_367i64..92_233_720_367, frac in 0u32..100_000_000) {
        let text = format!("{int}.{frac:08}");
        let sign = if text.starts_with('-') { -1 } else { 1 };
        let expected = int * FIXED_SCALE + sign * frac as i64;
        prop_assert_eq!(fx(&text), Ok(expected));
    }

    #[test]
    fn short_decimals_parse_exactly_whatever_follows(int in 0u64..10_000_000, frac in "[0-9]{0,7}", tail in "[,\\]} ]{0,1}[a-z0-9,]{0,8}") {
        let text = if frac.is_empty() { format!("{int}{tail}") } else { format!("{int}.{frac}{tail}") };
        let num_len = if frac.is_empty() { int.to_string().len() } else { int.to_string().len() + 1 + frac.len() };
        let got = Fixed::parse_prefix(text.as_bytes());
        // What the number means, computed independently.
        let scale = 10i128.pow(8);
        let frac_units = if frac.is_empty() { 0 } else {
            let f: i128 = frac.parse().unwrap();
            f * 10i128.pow(8 - frac.len() as u32)
        };
        let expected = int as i128 * scale + frac_units;
        match tail.as_bytes().first() {
            Some(b'0'..=b'9') | Some(b'e') => {} // the number goes on: another case
            _ => prop_assert_eq!(got, Ok((Fixed::from_raw(expected as i64), num_len)), "{}", text),
        }
    }

    #[test]
    fn to_f64_is_close_to_the_decimal_value(raw in any::<i64>()) {
        let f = Fixed::from_raw(raw);
        let parsed: f64 = f.to_string().parse().unwrap();
        prop_assert!((f.to_f64() - parsed).abs() <= parsed.abs() * 1e-15 + 1e-8);
    }

    #[test]
    fn unsigned_integer_text_round_trips(v in prop_oneof![any::<u64>(), 0u64..100_000_000_000], suffix in "[,}\\] a-df-z.]{0,3}") {
        let s = format!("{v}{suffix}");
        let want = if suffix.starts_with('.') && suffix.len() > 1 && suffix.as_bytes()[1].is_ascii_digit() {
            Err(NumError::NotAnInteger)
        } else if suffix.starts_with('.') {
            Err(NumError::Syntax)
        } else {
            Ok((v, v.to_string().len()))
        };
        prop_assert_eq!(parse_u64_prefix(s.as_bytes()), want);
    }

    #[test]
    fn arbitrary_text_never_panics(s in ".{0,40}") {
        let _ = s.parse::<Fixed>();
        let _ = parse_u64_prefix(s.as_bytes());
    }
}

#[test]
fn instrument_ids_are_dense_and_lookups_find_them() {
    let mut t = InstrumentTable::with_capacity(100).unwrap();
    let names: Vec<String> = (0..100)
        .map(|i| format!("BTC-{i}DEC25-{}-C", 1000 * i))
        .collect();
    for (i, n) in names.iter().enumerate() {
        assert_eq!(t.insert(n), Ok(InstrumentId(i as u16)));
    }
    for (i, n) in names.iter().enumerate() {
        assert_eq!(t.get(n.as_bytes()), Some(InstrumentId(i as u16)));
        assert_eq!(t.name(InstrumentId(i as u16)), Some(n.as_str()));
    }
    assert_eq!(t.get(b"BTC-PERPETUAL"), None);
    assert_eq!(t.get(b""), None);
    assert_eq!(t.name(InstrumentId(100)), None);
    assert_eq!(t.len(), 100);
    assert_eq!(t.iter().count(), 100);
}

#[test]
fn inserting_a_known_name_returns_its_id_without_using_capacity() {
    let mut t = InstrumentTable::with_capacity(1).unwrap();
    let id = t.insert("BTC-PERPETUAL").unwrap();
    assert_eq!(t.insert("BTC-PERPETUAL"), Ok(id));
    assert_eq!(
        t.insert("ETH-PERPETUAL"),
        Err(TableError::Full { capacity: 1 })
    );
    assert_eq!(t.len(), 1);
}

#[test]
fn bad_names_and_capacities_are_refused() {
    let mut t = InstrumentTable::with_capacity(4).unwrap();
    let long = "X".repeat(MAX_NAME_LEN + 1);
    assert_eq!(
        t.insert(&long),
        Err(TableError::NameTooLong {
            len: MAX_NAME_LEN + 1
        })
    );
    assert_eq!(t.get(long.as_bytes()), None);
    assert!(t.insert(&"X".repeat(MAX_NAME_LEN)).is_ok());
    assert_eq!(t.insert(""), Err(TableError::InvalidName));
    assert_eq!(t.insert("A\"B"), Err(TableError::InvalidName));
    assert_eq!(t.insert("A\\B"), Err(TableError::InvalidName));
    assert_eq!(t.insert("A\nB"), Err(TableError::InvalidName));
    assert_eq!(
        InstrumentTable::with_capacity(0).err(),
        Some(TableError::BadCapacity)
    );
    assert_eq!(
        InstrumentTable::with_capacity(70_000).err(),
        Some(TableError::BadCapacity)
    );
}

#[test]
fn a_full_table_still_answers_misses() {
    // Capacity 3 has 8 slots; every slot path must end on an empty one.
    let mut t = InstrumentTable::with_capacity(3).unwrap();
    for n in ["A", "B", "C"] {
        t.insert(n).unwrap();
    }
    for i in 0..1000 {
        assert_eq!(t.get(format!("miss-{i}").as_bytes()), None);
    }
}

#[test]
fn records_fit_in_a_cache_line_and_are_copy() {
    assert!(std::mem::size_of::<MdRecord>() <= 64);
    fn is_copy<T: Copy>() {}
    is_copy::<MdRecord>();
}

#[test]
fn flags_combine_and_test() {
    let f = BookFlags::FIRST.with(BookFlags::SNAPSHOT);
    assert!(f.contains(BookFlags::FIRST));
    assert!(f.contains(BookFlags::SNAPSHOT));
    assert!(!f.contains(BookFlags::LAST));
    assert!(!BookFlags::empty().contains(BookFlags::FIRST));
    let t = TradeFlags::LAST.with(TradeFlags::ID_HASHED);
    assert!(t.contains(TradeFlags::ID_HASHED) && !t.contains(TradeFlags::FIRST));
}
