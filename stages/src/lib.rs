//! The stage kinds of secvec.

pub mod device;
pub mod diagnose;
pub mod difference;
pub mod doctor;
pub mod fixes;
pub mod generate;
pub mod import_gguf;
pub mod init_model;
pub mod input_file;
pub mod interval;
pub mod kb_slice;
pub mod kb_summarize;
pub mod latency;
pub mod llm;
pub mod margin;
pub mod merge;
pub mod pair;
pub mod rag_prompt;
pub mod reference_samples;
pub mod report;
pub mod retrieve;
pub mod scenarios;
pub mod score;
pub mod train;
pub mod trend;

use secvec_stage::Registry;

/// Every stage kind this build knows.
pub fn registry() -> Registry {
    Registry::default()
        .with(pair::Pair)
        .with(init_model::InitModel)
        .with(import_gguf::ImportGguf)
        .with(generate::Generate)
        .with(latency::Latency)
        .with(margin::Margin)
        .with(difference::Difference)
        .with(scenarios::Scenarios)
        .with(score::Score)
        .with(reference_samples::ReferenceSamples)
        .with(train::Train)
        .with(diagnose::Diagnose)
        .with(merge::Merge)
        .with(kb_slice::KbSlice)
        .with(kb_summarize::KbSummarize)
        .with(retrieve::Retrieve)
        .with(rag_prompt::RagPrompt)
        .with(trend::Trend)
        .with(report::Report)
}
