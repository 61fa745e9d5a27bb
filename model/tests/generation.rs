//! Sampling behaviour of `generate` on the reference fixtures.

use std::path::PathBuf;

use secvec_model::generate::{generate, generate_many, Batcher, Batching, FinishReason, Request, Sampling};
use secvec_model::tokenizer::TextTokenizer;
use secvec_model::transformer::Transformer;
use tch::{Device, Kind};

fn load(arch: &str) -> (Transformer, TextTokenizer, serde_json::Value) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(arch);
    let model = Transformer::load(&dir, Device::Cpu, Kind::Float).unwrap();
    let tok = TextTokenizer::load(&dir, model.config.vocab_size).unwrap();
    let r = serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap()).unwrap();
    (model, tok, r)
}

fn ids(v: &serde_json::Value) -> Vec<i64> {
    serde_json::from_value(v.clone()).unwrap()
}

fn sampling(n: usize, temperature: f64, max_new_tokens: usize) -> Sampling {
    Sampling {
        n,
        temperature,
        top_p: 0.95,
        max_new_tokens,
        stop: vec![],
        seed: 11,
    }
}

#[test]
fn temperature_zero_is_greedy() {
    for arch in ["llama", "qwen2", "starcoder2"] {
        let (model, tok, r) = load(arch);
        let greedy = ids(&r["greedy"]);
        let out = generate(
            &model,
            &tok,
            Request::new(&ids(&r["input_ids"]), 0),
            &sampling(3, 0.0, greedy.len()),
            Batching::rows(2),
            &[],
        )
        .unwrap();
        assert_eq!(out.len(), 3);
        for c in out {
            assert_eq!(c.text, tok.decode(&greedy).unwrap(), "{arch}");
            assert_eq!(
                (c.completion_tokens, c.finish_reason),
                (greedy.len(), FinishReason::Length)
            );
        }
    }
}

#[test]
fn seeded_sampling_does_not_depend_on_batching() {
    let (model, tok, r) = load("llama");
    let prompt = ids(&r["input_ids"]);
    let run = |batch| {
        generate(
            &model,
            &tok,
            Request::new(&prompt, 5),
            &sampling(6, 1.0, 16),
            Batching::rows(batch),
            &[],
        )
        .unwrap()
    };
    let texts = |b| run(b).into_iter().map(|c| c.text).collect::<Vec<_>>();
    let all = texts(6);
    assert_eq!(all, texts(6), "same seed, same samples");
    assert_eq!(all, texts(1));
    assert_eq!(all, texts(4));
    let distinct: std::collections::BTreeSet<_> = all.iter().collect();
    assert!(
        distinct.len() > 1,
        "temperature 1 should give different samples: {all:?}"
    );
}

#[test]
fn a_kv_budget_limits_the_rows_at_once_and_changes_no_sample() {
    let (model, tok, r) = load("llama");
    let long = ids(&r["input_ids"]);
    let prompts = [long.clone(), long[..3].to_vec(), long[..5].to_vec()];
    // The last prompt's samples end at their first text, the others run 12 tokens.
    let at_once = |text: &str| (!text.is_empty()).then_some(text.len());
    let requests: Vec<Request> = prompts
        .iter()
        .enumerate()
        .map(|(i, ids)| Request {
            ids,
            key: i as u64,
            end_of: (i == 2).then_some(&at_once as &dyn Fn(&str) -> Option<usize>),
        })
        .collect();
    let run = |kv_budget: Option<u64>| {
        let batching = Batching {
            batch_size: 64,
            kv_budget,
        };
        let mut order = Vec::new();
        generate_many(
            &model,
            &tok,
            &requests,
            &sampling(3, 1.0, 12),
            batching,
            &[],
            &mut |request, c| {
                order.push(((request, c.sample), c.token_ids));
                std::ops::ControlFlow::Continue(())
            },
        )
        .unwrap();
        order
    };
    let unlimited = run(None);
    // Room for the shortest prompt's row and the prompt cache it is copied from, not for two
    // rows of any prompt (one row always runs, whatever its size).
    let one_row = 2 * (3 + 12) as u64 * model.kv_bytes_per_token();
    let limited = run(Some(one_row));
    let keys = |o: &[((usize, usize), Vec<i64>)]| o.iter().map(|(k, _)| *k).collect::<Vec<_>>();
    let in_order: Vec<(usize, usize)> = (0..3).flat_map(|r| (0..3).map(move |k| (r, k))).collect();
    assert_eq!(
        keys(&limited),
        in_order,
        "one row at a time finishes the samples in order"
    );
    assert_ne!(
        keys(&unlimited),
        in_order,
        "with room for all, short samples finish first"
    );
    let mut sorted = unlimited.clone();
    sorted.sort();
    assert_eq!(limited, sorted, "the same tokens either way");
}

#[test]
fn stop_sequences_and_eos_end_a_sample() {
    let (model, tok, r) = load("llama");
    let prompt = ids(&r["input_ids"]);
    let greedy = ids(&r["greedy"]);
    let full = tok.decode(&greedy).unwrap();
    let stop: String = full.chars().skip(6).take(3).collect();
    let want = &full[..full.find(&stop).unwrap()];
    let mut s = sampling(1, 0.0, greedy.len());
    s.stop = vec![stop.clone()];
    let out = generate(&model, &tok, Request::new(&prompt, 0), &s, Batching::rows(1), &[]).unwrap();
    assert_eq!(
        (out[0].text.as_str(), out[0].finish_reason),
        (want, FinishReason::Stop),
        "stop {stop:?}"
    );
    // The tokens are every one generated, the stop string's included: transformers' greedy ones.
    let n = out[0].token_ids.len();
    assert_eq!(out[0].token_ids, greedy[..n], "token ids");
    assert_eq!(n, out[0].completion_tokens);
    assert!(tok.decode(&out[0].token_ids).unwrap().contains(&stop));
    let eos = greedy[3];
    let out = generate(
        &model,
        &tok,
        Request::new(&prompt, 0),
        &sampling(1, 0.0, greedy.len()),
        Batching::rows(1),
        &[eos],
    )
    .unwrap();
    assert_eq!(
        (out[0].completion_tokens, out[0].finish_reason),
        (3, FinishReason::Stop)
    );
}

#[test]
fn an_end_rule_cuts_each_sample_where_its_text_is_complete() {
    let (model, tok, r) = load("qwen2");
    let prompt = ids(&r["input_ids"]);
    let s = sampling(4, 1.0, 24);
    let free = generate(&model, &tok, Request::new(&prompt, 3), &s, Batching::rows(2), &[]).unwrap();
    // "Complete" after the sample's fifth character: each sample stops there, with the text and
    // the tokens it had drawn in the free run (each sample keeps its own random stream).
    let fifth = |text: &str| text.char_indices().nth(5).map(|(i, _)| i);
    let until_fifth = Request {
        end_of: Some(&fifth),
        ..Request::new(&prompt, 3)
    };
    let cut = generate(&model, &tok, until_fifth, &s, Batching::rows(2), &[]).unwrap();
    for (f, c) in free.iter().zip(&cut) {
        let want = &f.text[..fifth(&f.text).expect("24 tokens make more than 5 characters")];
        assert_eq!((c.text.as_str(), c.finish_reason), (want, FinishReason::Stop));
        assert!(
            c.completion_tokens < f.completion_tokens,
            "{} vs {}",
            c.completion_tokens,
            f.completion_tokens
        );
        assert_eq!(c.token_ids, f.token_ids[..c.token_ids.len()]);
    }
}

#[test]
fn prompts_that_join_while_others_decode_are_sampled_as_if_alone() {
    let (model, tok, r) = load("llama");
    let long = ids(&r["input_ids"]);
    let jobs = [
        (long.clone(), sampling(3, 1.0, 16)),
        (
            long[..4].to_vec(),
            Sampling {
                top_p: 0.8,
                seed: 2,
                ..sampling(2, 0.7, 10)
            },
        ),
        (long[..2].to_vec(), sampling(2, 0.0, 12)),
    ];
    let alone: Vec<Vec<Vec<i64>>> = jobs
        .iter()
        .enumerate()
        .map(|(k, (ids, s))| {
            generate(&model, &tok, Request::new(ids, k as u64), s, Batching::rows(1), &[])
                .unwrap()
                .into_iter()
                .map(|c| c.token_ids)
                .collect()
        })
        .collect();
    let mut batcher = Batcher::new(&model, &tok, &[], Batching::rows(16));
    let mut got: Vec<Vec<Vec<i64>>> = jobs.iter().map(|(_, s)| vec![Vec::new(); s.n]).collect();
    let mut on_done = |job: usize, c: secvec_model::generate::Completion| {
        got[job][c.sample] = c.token_ids;
        std::ops::ControlFlow::Continue(())
    };
    let (mut most_rows, mut steps) = (0, 0);
    // The second prompt joins after 3 steps, the third after 6.
    while steps <= 6 || !batcher.is_idle() {
        if steps == 0 || steps == 3 || steps == 6 {
            let k = steps / 3;
            let (ids, s) = &jobs[k];
            assert_eq!(batcher.push(ids, k as u64, None, s.clone()).unwrap(), k);
        }
        batcher.step(&mut on_done).unwrap();
        most_rows = most_rows.max(batcher.rows());
        steps += 1;
    }
    assert!(most_rows > 3, "the prompts decoded together: at most {most_rows} rows");
    assert_eq!(got, alone);
}

/// Rows prefilled from prompts of different lengths, so they decode at different positions.
fn prefilled_rows(model: &Transformer, prompts: &[Vec<i64>]) -> Vec<secvec_model::transformer::KvCache> {
    let _guard = tch::no_grad_guard();
    prompts
        .iter()
        .map(|p| {
            let mut cache = model.new_cache(1, p.len() as i64 + 4);
            // Only the cache the prefill leaves matters here, not its logits.
            let _logits = model
                .forward(&tch::Tensor::from_slice(p).unsqueeze(0), &mut cache)
                .unwrap();
            cache
        })
        .collect()
}

#[test]
fn a_rows_logits_are_the_same_bits_whatever_rows_decode_beside_it() {
    for arch in ["llama", "qwen2", "starcoder2"] {
        let (model, _, r) = load(arch);
        let prompt = ids(&r["input_ids"]);
        let prompts: Vec<Vec<i64>> = (1..=prompt.len()).step_by(2).map(|n| prompt[..n].to_vec()).collect();
        let next: Vec<i64> = (0..prompts.len() as i64).map(|i| 5 + 7 * i).collect();
        let _guard = tch::no_grad_guard();
        // Every row together, then each row alone, then the rows in reverse order in pairs.
        let mut together = prefilled_rows(&model, &prompts);
        let all = model
            .decode_rows(&next, &mut together.iter_mut().collect::<Vec<_>>())
            .unwrap();
        for (i, cache) in prefilled_rows(&model, &prompts).iter_mut().enumerate() {
            let alone = model.decode_rows(&next[i..=i], &mut [cache]).unwrap();
            assert!(alone.equal(&all.narrow(0, i as i64, 1)), "{arch}: row {i} alone");
        }
        let mut caches = prefilled_rows(&model, &prompts);
        caches.reverse();
        let reversed: Vec<i64> = next.iter().rev().copied().collect();
        for (j, pair) in caches.chunks_mut(2).enumerate() {
            let ids = &reversed[2 * j..2 * j + pair.len()];
            let out = model
                .decode_rows(ids, &mut pair.iter_mut().collect::<Vec<_>>())
                .unwrap();
            for (k, _) in ids.iter().enumerate() {
                let i = next.len() - 1 - (2 * j + k);
                assert!(
                    out.narrow(0, k as i64, 1).equal(&all.narrow(0, i as i64, 1)),
                    "{arch}: row {i} in a pair"
                );
            }
        }
        // And the logits are the model's: those of the full forward pass over prompt and token.
        let mut cache = model.new_cache(1, prompts[0].len() as i64 + 1);
        let mut full = prompts[0].clone();
        full.push(next[0]);
        let logits = model
            .forward(&tch::Tensor::from_slice(&full).unsqueeze(0), &mut cache)
            .unwrap()
            .select(1, -1);
        let diff = f64::try_from((logits - all.narrow(0, 0, 1)).abs().max()).unwrap();
        assert!(diff < 1e-4, "{arch}: decode_rows against a full pass: {diff}");
    }
}
