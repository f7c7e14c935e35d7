//! The source's metadata columns (from Parquet or clip-retrieval) as the
//! viewer colours by them and filters on them.
//!
//! Each column is read once per analysis, in the background with the other
//! [`super::colour::Facts`], into one of three shapes:
//!
//! * **categories**: booleans, strings with up to [`MAX_NAMED_CATEGORIES`]
//!   distinct values (a split, a source, ImageNet's 1,000 class names) and
//!   integers with up to [`MAX_CATEGORIES`] (class ids): one palette colour per
//!   value, most frequent first (past the first few dozen, hues repeat, but
//!   neighbouring groups still differ); filtered by ticking values;
//! * **numbers**: floats, and integers with more distinct values: the colour
//!   map between the 1st and the 99th percentile (one extreme value must not
//!   squash every other colour into one end); filtered by a range;
//! * **text**: strings with more distinct values (captions, URLs, ids,
//!   timestamps): no colour (a palette of a hundred thousand hues says
//!   nothing); filtered by a case-insensitive substring.
//!
//! Nulls are "no value": grey, and left out by every filter except a
//! category filter that ticks "no value".

use std::collections::{BTreeSet, HashMap};

use crate::source::{MetadataColumn, MetadataValues};

/// More distinct values than this and an integer column is numbers (a width,
/// a count, a year) rather than ids.
pub const MAX_CATEGORIES: usize = 64;

/// More distinct values than this and a string column is text: names of
/// things repeat (classes, sources, photographers), free text hardly does.
pub const MAX_NAMED_CATEGORIES: usize = 1_000;

/// The name a category filter uses for nulls.
pub const NO_VALUE_NAME: &str = "(no value)";

#[derive(Debug)]
pub struct ColumnFacts {
    pub name: String,
    /// "int", "float", "bool" or "text": the column's type.
    pub source_kind: &'static str,
    pub values: ColumnValues,
    /// Rows without a value.
    pub nulls: usize,
}

#[derive(Debug)]
pub enum ColumnValues {
    /// Per row its category (an index into `names`), -1 for a null;
    /// categories by count, most frequent first (ties by name).
    Categories {
        codes: Vec<i32>,
        names: Vec<String>,
        counts: Vec<usize>,
    },
    /// Per row its value (NaN for a null); the colour map's ends (1st and
    /// 99th percentile) and the lowest and highest value.
    Numbers {
        values: Vec<f64>,
        colour_range: (f64, f64),
        range: (f64, f64),
    },
    /// Every value lower-cased, end to end (one string, not a million);
    /// row `i` is `lower[ends[i]..ends[i + 1]]` (empty for a null, which
    /// `present` tells apart from an empty string).
    Text {
        lower: String,
        ends: Vec<usize>,
        present: Vec<bool>,
    },
}

impl ColumnFacts {
    pub fn of(column: &MetadataColumn) -> Self {
        let values = &column.values;
        let n = values.len();
        let nulls = (0..n).filter(|&i| is_null(values, i)).count();
        let shape = match values {
            MetadataValues::Bool(_) => categories(values),
            MetadataValues::Float(v) => numbers(v.iter().map(|x| x.unwrap_or(f64::NAN))),
            MetadataValues::Int(v) => {
                if distinct_at_most(v.iter().flatten(), MAX_CATEGORIES) {
                    categories(values)
                } else {
                    numbers(v.iter().map(|x| x.map_or(f64::NAN, |x| x as f64)))
                }
            }
            MetadataValues::Text(v) => {
                if distinct_at_most(v.iter().flatten(), MAX_NAMED_CATEGORIES) {
                    categories(values)
                } else {
                    text(v)
                }
            }
        };
        Self {
            name: column.name.clone(),
            source_kind: values.kind(),
            values: shape,
            nulls,
        }
    }

    pub fn len(&self) -> usize {
        match &self.values {
            ColumnValues::Categories { codes, .. } => codes.len(),
            ColumnValues::Numbers { values, .. } => values.len(),
            ColumnValues::Text { present, .. } => present.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether points can be coloured by it (not free text).
    pub fn colours(&self) -> bool {
        !matches!(self.values, ColumnValues::Text { .. })
    }

    /// Row `i`'s colour: a palette id for categories (-1: no value), or a
    /// position on the colour map in [0, 1] (NaN: no value); `None` for text.
    pub fn colour_of(&self, i: usize) -> Option<ColumnColour> {
        match &self.values {
            ColumnValues::Categories { codes, .. } => Some(ColumnColour::Palette(codes[i])),
            ColumnValues::Numbers {
                values,
                colour_range: (lo, hi),
                ..
            } => {
                let v = values[i];
                let t = if v.is_nan() {
                    f64::NAN // no value
                } else if hi > lo {
                    ((v - lo) / (hi - lo)).clamp(0.0, 1.0)
                } else {
                    0.5
                };
                Some(ColumnColour::Map(t as f32))
            }
            ColumnValues::Text { .. } => None,
        }
    }

    /// The filter `rule` made ready to test rows of this column; `None`
    /// when the rule is not one this column can take (a range on text, a
    /// set of values on numbers). Categories take every rule: a range keeps
    /// the values that are numbers in it, a substring the values that
    /// contain it.
    pub fn matcher(&self, rule: &ColumnRule) -> Option<Matcher<'_>> {
        Some(match (&self.values, rule) {
            (ColumnValues::Categories { codes, names, .. }, rule) => {
                let (allowed, nulls) = match rule {
                    ColumnRule::OneOf(chosen) => (
                        names.iter().map(|n| chosen.contains(n)).collect(),
                        chosen.contains(NO_VALUE_NAME),
                    ),
                    &ColumnRule::Between { low, high } => (
                        names
                            .iter()
                            .map(|n| n.parse::<f64>().is_ok_and(|v| v >= low && v <= high))
                            .collect(),
                        false,
                    ),
                    ColumnRule::Contains(needle) => {
                        let needle = needle.trim().to_lowercase();
                        let allowed = names
                            .iter()
                            .map(|n| n.to_lowercase().contains(&needle))
                            .collect();
                        (allowed, false)
                    }
                };
                Matcher::Codes {
                    codes,
                    allowed,
                    nulls,
                }
            }
            (ColumnValues::Numbers { values, .. }, &ColumnRule::Between { low, high }) => {
                Matcher::Between { values, low, high }
            }
            (
                ColumnValues::Text {
                    lower,
                    ends,
                    present,
                },
                ColumnRule::Contains(needle),
            ) => Matcher::Contains {
                lower,
                ends,
                present,
                needle: needle.trim().to_lowercase(),
            },
            _ => return None,
        })
    }

    /// The rule a new filter on this column starts from: every value.
    pub fn everything(&self) -> ColumnRule {
        match &self.values {
            ColumnValues::Categories { names, .. } => {
                let mut all: BTreeSet<String> = names.iter().cloned().collect();
                all.insert(NO_VALUE_NAME.to_owned());
                ColumnRule::OneOf(all)
            }
            ColumnValues::Numbers {
                range: (low, high), ..
            } => ColumnRule::Between {
                low: *low,
                high: *high,
            },
            ColumnValues::Text { .. } => ColumnRule::Contains(String::new()),
        }
    }
}

/// What one row's value colours it with.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ColumnColour {
    Palette(i32),
    Map(f32),
}

/// Which rows of a column stay bright.
#[derive(Clone, Debug, PartialEq)]
pub enum ColumnRule {
    /// Categories: these values ([`NO_VALUE_NAME`] for nulls).
    OneOf(BTreeSet<String>),
    /// Numbers: from `low` to `high`, both included.
    Between { low: f64, high: f64 },
    /// Text: containing this, case-insensitive (empty: every row with a value).
    Contains(String),
}

impl ColumnRule {
    /// Reads `=a,b,c` (categories), `LOW..HIGH` (numbers; either end may be
    /// left out) or `~text` (a substring), as scripts write them.
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Some(values) = text.strip_prefix('=') {
            return Ok(ColumnRule::OneOf(
                values.split(',').map(|v| v.trim().to_owned()).collect(),
            ));
        }
        if let Some(needle) = text.strip_prefix('~') {
            return Ok(ColumnRule::Contains(needle.to_owned()));
        }
        let (low, high) = text
            .split_once("..")
            .ok_or_else(|| format!("{text} is not =A,B, LOW..HIGH or ~TEXT"))?;
        let end = |v: &str, default: f64| {
            if v.trim().is_empty() {
                Ok(default)
            } else {
                v.trim()
                    .parse::<f64>()
                    .map_err(|_| format!("{v} is not a number"))
            }
        };
        Ok(ColumnRule::Between {
            low: end(low, f64::NEG_INFINITY)?,
            high: end(high, f64::INFINITY)?,
        })
    }
}

/// A column filter: the column (by name, so it survives a re-run) and the
/// rule.
#[derive(Clone, Debug, PartialEq)]
pub struct ColumnFilter {
    pub column: String,
    pub rule: ColumnRule,
}

/// A [`ColumnRule`] ready to test rows of the column it was made for.
pub enum Matcher<'a> {
    /// Categories: whether each code passes, and whether nulls do.
    Codes {
        codes: &'a [i32],
        allowed: Vec<bool>,
        nulls: bool,
    },
    Between {
        values: &'a [f64],
        low: f64,
        high: f64,
    },
    /// Text, lower-cased as in [`ColumnValues::Text`].
    Contains {
        lower: &'a str,
        ends: &'a [usize],
        present: &'a [bool],
        needle: String,
    },
}

impl Matcher<'_> {
    pub fn passes(&self, i: usize) -> bool {
        match self {
            Matcher::Codes {
                codes,
                allowed,
                nulls,
            } => match codes[i] {
                -1 => *nulls,
                c => allowed[c as usize],
            },
            // NaN (no value) fails both comparisons.
            Matcher::Between { values, low, high } => values[i] >= *low && values[i] <= *high,
            Matcher::Contains {
                lower,
                ends,
                present,
                needle,
            } => present[i] && lower[ends[i]..ends[i + 1]].contains(needle.as_str()),
        }
    }
}

fn is_null(values: &MetadataValues, i: usize) -> bool {
    match values {
        MetadataValues::Int(v) => v[i].is_none(),
        MetadataValues::Float(v) => v[i].is_none_or(f64::is_nan),
        MetadataValues::Bool(v) => v[i].is_none(),
        MetadataValues::Text(v) => v[i].is_none(),
    }
}

/// At most `limit` distinct values (stops counting past it).
fn distinct_at_most<'a, T: std::hash::Hash + Eq + 'a>(
    values: impl Iterator<Item = &'a T>,
    limit: usize,
) -> bool {
    let mut seen = std::collections::HashSet::new();
    for v in values {
        seen.insert(v);
        if seen.len() > limit {
            return false;
        }
    }
    true
}

fn categories(values: &MetadataValues) -> ColumnValues {
    let n = values.len();
    let keys: Vec<Option<String>> = (0..n)
        .map(|i| (!is_null(values, i)).then(|| values.text(i)))
        .collect();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for k in keys.iter().flatten() {
        *counts.entry(k.as_str()).or_default() += 1;
    }
    let mut order: Vec<(&str, usize)> = counts.into_iter().collect();
    // Integers by value when few (class ids 0..9 keep their order); the rest
    // by count, so the largest groups get the first, most distinct colours.
    let numeric = matches!(values, MetadataValues::Int(_));
    order.sort_by(|a, b| {
        if numeric {
            a.0.parse::<i64>().ok().cmp(&b.0.parse::<i64>().ok())
        } else {
            b.1.cmp(&a.1).then(a.0.cmp(b.0))
        }
    });
    let code_of: HashMap<&str, i32> = order
        .iter()
        .enumerate()
        .map(|(c, (name, _))| (*name, c as i32))
        .collect();
    let codes = keys
        .iter()
        .map(|k| k.as_deref().map_or(-1, |k| code_of[k]))
        .collect();
    ColumnValues::Categories {
        codes,
        names: order.iter().map(|(name, _)| name.to_string()).collect(),
        counts: order.iter().map(|(_, c)| *c).collect(),
    }
}

fn numbers(values: impl Iterator<Item = f64>) -> ColumnValues {
    let values: Vec<f64> = values.collect();
    let mut present: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    present.sort_by(f64::total_cmp);
    let at = |q: f64| {
        present
            .get(((present.len() - 1) as f64 * q).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    let (colour_range, range) = if present.is_empty() {
        ((0.0, 1.0), (0.0, 1.0))
    } else {
        (
            (at(0.01), at(0.99)),
            (present[0], present[present.len() - 1]),
        )
    };
    ColumnValues::Numbers {
        values,
        colour_range,
        range,
    }
}

fn text(values: &[Option<String>]) -> ColumnValues {
    let mut lower = String::new();
    let mut ends = Vec::with_capacity(values.len() + 1);
    ends.push(0);
    for v in values {
        if let Some(v) = v {
            lower.push_str(&v.to_lowercase());
        }
        ends.push(lower.len()); // a null adds an empty row
    }
    ColumnValues::Text {
        lower,
        ends,
        present: values.iter().map(Option::is_some).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(name: &str, values: MetadataValues) -> ColumnFacts {
        ColumnFacts::of(&MetadataColumn {
            name: name.into(),
            source_type: String::new(),
            values,
        })
    }

    fn passing(c: &ColumnFacts, rule: &str) -> Vec<usize> {
        let rule = ColumnRule::parse(rule).unwrap();
        let m = c.matcher(&rule).expect("a rule this column takes");
        (0..c.len()).filter(|&i| m.passes(i)).collect()
    }

    #[test]
    fn strings_with_few_values_are_categories_by_count() {
        let split = |s: &str| Some(s.to_owned());
        let c = column(
            "split",
            MetadataValues::Text(vec![
                split("val"),
                split("train"),
                None,
                split("train"),
                split("test"),
            ]),
        );
        let ColumnValues::Categories {
            codes,
            names,
            counts,
        } = &c.values
        else {
            panic!("{:?}", c.values)
        };
        assert_eq!(names, &["train", "test", "val"]);
        assert_eq!(counts, &[2, 1, 1]);
        assert_eq!(codes, &[2, 0, -1, 0, 1]);
        assert_eq!(c.nulls, 1);
        assert_eq!(c.colour_of(2), Some(ColumnColour::Palette(-1)));
        assert_eq!(passing(&c, "=train,val"), [0, 1, 3]);
        assert_eq!(passing(&c, "=test,(no value)"), [2, 4]);
        assert_eq!(passing(&c, "~T"), [1, 3, 4], "values containing it");
        assert!(passing(&c, "0..1").is_empty(), "no value is a number");
    }

    #[test]
    fn integers_are_categories_when_few_and_numbers_when_many() {
        let few = column(
            "class",
            MetadataValues::Int(vec![Some(10), Some(2), Some(10), None]),
        );
        let ColumnValues::Categories { names, .. } = &few.values else {
            panic!()
        };
        assert_eq!(names, &["2", "10"], "small integers keep their order");
        assert_eq!(passing(&few, "5..20"), [0, 2], "a range over their values");
        let many = column(
            "width",
            MetadataValues::Int((0..100).map(|v| Some(v * 3)).chain([None]).collect()),
        );
        let ColumnValues::Numbers { range, .. } = &many.values else {
            panic!("{:?}", many.values)
        };
        assert_eq!(*range, (0.0, 297.0));
        assert_eq!(passing(&many, "30..36"), [10, 11, 12]);
        assert_eq!(passing(&many, "..5"), [0, 1]);
        assert_eq!(
            passing(&many, "290.."),
            [97, 98, 99],
            "a null is in no range"
        );
    }

    #[test]
    fn the_colour_map_ignores_one_extreme_value() {
        let mut v: Vec<Option<f64>> = (0..200).map(|i| Some(i as f64 / 199.0)).collect();
        v.push(Some(1e300));
        v.push(None);
        let c = column("score", MetadataValues::Float(v));
        let Some(ColumnColour::Map(mid)) = c.colour_of(100) else {
            panic!()
        };
        assert!((mid - 0.5).abs() < 0.05, "{mid}");
        assert_eq!(c.colour_of(200), Some(ColumnColour::Map(1.0)));
        let Some(ColumnColour::Map(none)) = c.colour_of(201) else {
            panic!()
        };
        assert!(none.is_nan());
        assert_eq!(c.nulls, 1);
    }

    #[test]
    fn free_text_is_filtered_by_a_substring_and_not_coloured() {
        let captions: Vec<Option<String>> = (0..(MAX_NAMED_CATEGORIES + 10))
            .map(|i| {
                Some(format!(
                    "Photo {i} of a {}",
                    if i % 7 == 0 { "Cat" } else { "dog" }
                ))
            })
            .chain([None])
            .collect();
        let c = column("caption", MetadataValues::Text(captions));
        assert!(!c.colours());
        assert_eq!(c.colour_of(0), None);
        let cats: Vec<usize> = (0..MAX_NAMED_CATEGORIES + 10).step_by(7).collect();
        assert_eq!(passing(&c, "~a cat"), cats);
        assert_eq!(
            passing(&c, "~").len(),
            MAX_NAMED_CATEGORIES + 10,
            "empty: every row with a value"
        );
        assert!(
            c.matcher(&ColumnRule::Between {
                low: 0.0,
                high: 1.0
            })
            .is_none()
        );
    }

    #[test]
    fn rules_parse_as_scripts_write_them() {
        assert_eq!(
            ColumnRule::parse("=a, b").unwrap(),
            ColumnRule::OneOf(["a".to_owned(), "b".to_owned()].into())
        );
        assert_eq!(
            ColumnRule::parse("1.5..").unwrap(),
            ColumnRule::Between {
                low: 1.5,
                high: f64::INFINITY
            }
        );
        assert_eq!(
            ColumnRule::parse("~Dog").unwrap(),
            ColumnRule::Contains("Dog".into())
        );
        assert!(ColumnRule::parse("cat").is_err());
        assert!(ColumnRule::parse("a..b").is_err());
    }

    #[test]
    fn a_new_filter_starts_with_every_row() {
        let c = column(
            "ok",
            MetadataValues::Bool(vec![Some(true), None, Some(false)]),
        );
        let all = c.everything();
        let m = c.matcher(&all).unwrap();
        assert!((0..3).all(|i| m.passes(i)));
    }
}
