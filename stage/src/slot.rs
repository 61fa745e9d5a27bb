//! Input slots: the named inputs a stage kind declares.

/// The tag every `{path: ...}` input carries.
pub const FILES: &str = "files";

/// One named input of a stage kind.
#[derive(Clone, Debug)]
pub struct InputSlot {
    pub name: &'static str,
    /// Output tags an upstream may carry, one of which must match (`FILES` admits paths on disk).
    pub accepts: &'static [&'static str],
    /// Whether the slot takes a list of artifacts.
    pub many: bool,
    pub optional: bool,
    pub doc: &'static str,
}

impl InputSlot {
    pub fn accepts_files(&self) -> bool {
        self.accepts.contains(&FILES)
    }

    /// What the slot takes, in words: "`model` or a `{path: ...}`".
    pub fn describe(&self) -> String {
        let words: Vec<String> = self
            .accepts
            .iter()
            .map(|t| {
                if *t == FILES {
                    "a `{path: ...}`".to_string()
                } else {
                    format!("the output of a stage producing `{t}`")
                }
            })
            .collect();
        words.join(" or ")
    }
}
