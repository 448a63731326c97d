//! Feature `tracing`: one `sandload::file` span per file, carrying its receipt's fields, with an
//! event inside it whose level says accepted (info) or refused (warn).
#![cfg(feature = "tracing")]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use sandload::{Input, Limits};
use sandload_samples as samples;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

mod common;

/// Spans (name, fields) and events (level, span id) as they are made.
#[derive(Default)]
struct Log {
    spans: Vec<(String, BTreeMap<String, String>)>,
    events: Vec<(Level, Option<u64>, BTreeMap<String, String>)>,
    current: Option<u64>,
}

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Log>>);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_string(), format!("{value:?}").trim_matches('"').to_string());
    }
}

impl Subscriber for Recorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut fields = BTreeMap::new();
        span.record(&mut Fields(&mut fields));
        let mut log = self.0.lock().unwrap();
        log.spans.push((span.metadata().name().to_string(), fields));
        Id::from_u64(log.spans.len() as u64)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        let mut log = self.0.lock().unwrap();
        let current = log.current;
        log.events.push((*event.metadata().level(), current, fields));
    }
    fn enter(&self, span: &Id) {
        self.0.lock().unwrap().current = Some(span.into_u64());
    }
    fn exit(&self, _: &Id) {
        self.0.lock().unwrap().current = None;
    }
}

#[test]
fn one_span_per_file_with_the_receipt() {
    let sandbox = common::sandbox_with(Limits::default().with_max_tensors(1000));
    let recorder = Recorder::default();
    tracing::subscriber::with_default(recorder.clone(), || {
        sandbox.open(Input::from_bytes(samples::small_checkpoint(), "good.safetensors")).unwrap();
        sandbox.open(Input::from_bytes(samples::malicious_pickle(), "evil.safetensors")).unwrap_err();
    });
    let log = recorder.0.lock().unwrap();
    let files: Vec<&BTreeMap<String, String>> =
        log.spans.iter().filter(|(name, _)| name == "sandload::file").map(|(_, f)| f).collect();
    assert_eq!(files.len(), 2, "{:?}", log.spans);
    let good = files[0];
    assert_eq!(good["file"], "good.safetensors");
    assert_eq!(good["format"], "safetensors");
    assert_eq!(good["guest"], "safetensors-header");
    assert_eq!(good["verdict"], "accepted");
    assert_eq!(good["max_tensors"], "1000");
    assert!(good["guest_peak_memory_bytes"].parse::<u64>().unwrap() > 0);
    assert!(good["total_time_us"].parse::<u64>().is_ok());
    let evil = files[1];
    assert_eq!((evil["verdict"].as_str(), evil["kind"].as_str()), ("rejected", "refused_format"));
    assert_eq!(evil["format"], "pickle");
    // The events sit inside their spans, at info and warn.
    let span_ids: Vec<u64> = log
        .spans
        .iter()
        .enumerate()
        .filter(|(_, (name, _))| name == "sandload::file")
        .map(|(i, _)| i as u64 + 1)
        .collect();
    let levels: Vec<(Level, Option<u64>)> = log.events.iter().map(|(l, s, _)| (*l, *s)).collect();
    assert!(levels.contains(&(Level::INFO, Some(span_ids[0]))), "{levels:?}");
    assert!(levels.contains(&(Level::WARN, Some(span_ids[1]))), "{levels:?}");
    let warn = log.events.iter().find(|(l, _, _)| *l == Level::WARN).unwrap();
    assert!(warn.2["error"].contains("pickle"), "{:?}", warn.2);
}
