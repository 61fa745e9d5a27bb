//! Tokenizers from `tokenizer.json` through the `tokenizers` crate, and the small byte-level
//! BPE tokenizer `init-model` trains for tiny models.

use std::path::{Path, PathBuf};

use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::models::TrainerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer};

/// The end-of-text token of tokenizers secvec trains.
pub const EOS: &str = "<|endoftext|>";

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("{path}: {what}")]
    Load { path: PathBuf, what: String },
    #[error(
        "{path} has {tokens} tokens but the model's vocab_size is {vocab}; the tokenizer does not belong to this model"
    )]
    VocabMismatch { path: PathBuf, tokens: usize, vocab: i64 },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
}

fn tk(e: tokenizers::Error) -> TokenizerError {
    TokenizerError::Tokenizer(e.to_string())
}

pub struct TextTokenizer {
    inner: Tokenizer,
}

impl TextTokenizer {
    /// Loads `dir/tokenizer.json` and checks every token id fits the model's embedding table.
    pub fn load(dir: &Path, vocab_size: i64) -> Result<TextTokenizer, TokenizerError> {
        let path = dir.join("tokenizer.json");
        let inner = Tokenizer::from_file(&path).map_err(|e| TokenizerError::Load {
            path: path.clone(),
            what: e.to_string(),
        })?;
        let tokens = inner.get_vocab_size(true);
        if tokens as i64 > vocab_size {
            return Err(TokenizerError::VocabMismatch {
                path,
                tokens,
                vocab: vocab_size,
            });
        }
        Ok(TextTokenizer { inner })
    }

    /// Trains a byte-level BPE tokenizer of `vocab_size` tokens (including [`EOS`]) on `texts`.
    /// Training is deterministic: the same texts give the same tokenizer.
    pub fn train_bpe<S: AsRef<str> + Send>(
        texts: impl Iterator<Item = S> + Send,
        vocab_size: usize,
    ) -> Result<TextTokenizer, TokenizerError> {
        let mut inner = Tokenizer::new(BPE::default());
        inner.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
        inner.with_decoder(Some(ByteLevel::default()));
        let mut trainer: TrainerWrapper = BpeTrainerBuilder::new()
            .vocab_size(vocab_size)
            .show_progress(false)
            .special_tokens(vec![AddedToken::from(EOS, true)])
            .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
            .build()
            .into();
        inner.train(&mut trainer, texts).map_err(tk)?;
        Ok(TextTokenizer { inner })
    }

    pub fn save(&self, path: &Path) -> Result<(), TokenizerError> {
        self.inner.save(path, false).map_err(tk)
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn token_id(&self, token: &str) -> Option<i64> {
        self.inner.token_to_id(token).map(i64::from)
    }

    /// Token ids as the tokenizer's own post-processor adds them (a BOS where it says so), as
    /// transformers does by default.
    pub fn encode(&self, text: &str) -> Result<Vec<i64>, TokenizerError> {
        let enc = self.inner.encode(text, true).map_err(tk)?;
        Ok(enc.get_ids().iter().map(|&i| i64::from(i)).collect())
    }

    /// Token ids of text that continues other text: no special tokens added.
    pub fn encode_continuation(&self, text: &str) -> Result<Vec<i64>, TokenizerError> {
        let enc = self.inner.encode(text, false).map_err(tk)?;
        Ok(enc.get_ids().iter().map(|&i| i64::from(i)).collect())
    }

    pub fn decode(&self, ids: &[i64]) -> Result<String, TokenizerError> {
        let ids: Vec<u32> = ids.iter().map(|&i| i as u32).collect();
        self.inner.decode(&ids, true).map_err(tk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trained_tokenizers_are_deterministic_and_round_trip() {
        let texts = [
            "def f(x):\n    return x + 1\n",
            "int main(void) { return 0; }",
            "SELECT * FROM users WHERE id = ?",
        ];
        let a = TextTokenizer::train_bpe(texts.iter(), 300).unwrap();
        let b = TextTokenizer::train_bpe(texts.iter(), 300).unwrap();
        let dir = tempfile::tempdir().unwrap();
        a.save(&dir.path().join("a.json")).unwrap();
        b.save(&dir.path().join("b.json")).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("a.json")).unwrap(),
            std::fs::read(dir.path().join("b.json")).unwrap()
        );
        let ids = a.encode("def g(y): return y").unwrap();
        assert_eq!(a.decode(&ids).unwrap(), "def g(y): return y");
        assert_eq!(a.token_id(EOS), Some(0));
    }

    #[test]
    fn a_tokenizer_larger_than_the_vocab_is_refused() {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/llama");
        assert!(TextTokenizer::load(&fixtures, 384).is_ok());
        let err = TextTokenizer::load(&fixtures, 100).err().unwrap().to_string();
        assert!(
            err.contains("has 384 tokens but the model's vocab_size is 100"),
            "{err}"
        );
    }
}
