//! Enums a person picks by name (`--reducer umap`, a combo box in the viewer,
//! `report.json`). One trait lets every front end list, parse and print them
//! the same way, without the library depending on a command-line crate.

pub trait Choice: Copy + PartialEq + Sized + 'static {
    /// Every value, in the order menus list them.
    const ALL: &'static [Self];

    /// The name a person types or reads (lower case, stable).
    fn name(self) -> &'static str;

    /// One line saying what the value means.
    fn help(self) -> &'static str;

    /// The value named `name` (case-insensitive).
    fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .copied()
            .find(|c| c.name().eq_ignore_ascii_case(name))
    }

    /// `name` or an error listing the values there are.
    fn parse_name(name: &str) -> Result<Self, String> {
        Self::from_name(name).ok_or_else(|| {
            let names: Vec<&str> = Self::ALL.iter().map(|c| c.name()).collect();
            format!("unknown value {name:?}: choose one of {}", names.join(", "))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Fruit {
        Apple,
        Pear,
    }

    impl Choice for Fruit {
        const ALL: &'static [Self] = &[Fruit::Apple, Fruit::Pear];
        fn name(self) -> &'static str {
            match self {
                Fruit::Apple => "apple",
                Fruit::Pear => "pear",
            }
        }
        fn help(self) -> &'static str {
            "a fruit"
        }
    }

    #[test]
    fn names_round_trip_and_unknown_names_list_the_choices() {
        for &f in Fruit::ALL {
            assert_eq!(Fruit::from_name(f.name()), Some(f));
        }
        assert_eq!(Fruit::from_name("PEAR"), Some(Fruit::Pear));
        let err = Fruit::parse_name("plum").unwrap_err();
        assert!(err.contains("apple, pear"), "{err}");
    }
}
