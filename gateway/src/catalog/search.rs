//! Ranked search over the catalog's tools, for agents that see too many tools to list.
//!
//! BM25F over five fields of each tool — name ×3, title ×2, description ×1, parameter names
//! ×1.5 and parameter descriptions ×0.5 — each normalised by its own average length. Text is
//! lowercased, split on punctuation and inside identifiers (`github__listRepos` → github, list,
//! repos), stripped of a short English stop-word list and stemmed (Snowball English), the same
//! way for tools and queries. Everything that does not depend on the query is computed when the
//! index is built, so a posting holds the finished score of one term in one tool and a query
//! only adds up the postings of its own terms. The index knows nothing of callers: the gateway
//! passes a `visible` filter, applied before the top results are cut, so a hidden tool neither
//! appears nor takes a place.

use std::collections::HashMap;

use rust_stemmers::{Algorithm, Stemmer};
use serde_json::{Map, Value};

/// What is indexed of one tool.
#[derive(Debug, Clone, Copy)]
pub struct Doc<'a> {
    pub name: &'a str,
    pub title: Option<&'a str>,
    pub description: Option<&'a str>,
    pub input_schema: &'a Map<String, Value>,
}

/// One ranked tool: its number in the order given to [`SearchIndex::build`], and its score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    pub doc: usize,
    pub score: f32,
}

/// The fields of a tool, in the order of [`WEIGHTS`].
const NAME: usize = 0;
const TITLE: usize = 1;
const DESCRIPTION: usize = 2;
const PARAM_NAME: usize = 3;
const PARAM_DESCRIPTION: usize = 4;
const FIELDS: usize = 5;

/// A word in the name says most about what a tool does; a word in a parameter's description
/// says least (it is often boilerplate such as "the ID of the …").
const WEIGHTS: [f32; FIELDS] = [3.0, 2.0, 1.0, 1.5, 0.5];

/// Term-frequency saturation and length normalisation, at the usual BM25 values.
const K1: f32 = 1.2;
const B: f32 = 0.75;

/// Longer "words" are ids, hashes or encoded blobs: no query matches them, and skipping them
/// bounds the stemmer's work on hostile descriptions.
const MAX_TOKEN_BYTES: usize = 48;

/// Words that say nothing about which tool is meant, so that a query phrased as a question
/// ("how do I …") is ranked on its content words. Kept short on purpose: words such as
/// "all", "new" or "not" can tell tools apart, and IDF already discounts common ones.
const STOP_WORDS: &[&str] = &[
    "a", "about", "an", "and", "any", "are", "as", "at", "be", "been", "but", "by", "can", "could",
    "did", "do", "does", "for", "from", "had", "has", "have", "how", "i", "if", "in", "into", "is",
    "it", "its", "me", "my", "of", "on", "or", "our", "please", "should", "so", "some", "than",
    "that", "the", "their", "them", "then", "there", "these", "they", "this", "those", "to", "was",
    "we", "were", "what", "when", "where", "which", "who", "why", "will", "with", "would", "you",
    "your",
];

/// Tools ranked by BM25F; built once per catalog and queried many times.
pub struct SearchIndex {
    /// How many tools were indexed.
    docs: usize,
    /// Term (stemmed) → its number, which indexes `starts`.
    terms: HashMap<Box<str>, u32>,
    /// The postings of term `t` are `postings[starts[t]..starts[t + 1]]`, in document order.
    starts: Vec<u32>,
    postings: Vec<Posting>,
}

/// One term in one tool, with the term's whole contribution to that tool's score.
#[derive(Debug, Clone, Copy)]
struct Posting {
    doc: u32,
    score: f32,
}

/// Sizes only: the postings of a large catalog would flood a log.
impl std::fmt::Debug for SearchIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SearchIndex")
            .field("tools", &self.docs)
            .field("terms", &self.terms.len())
            .field("postings", &self.postings.len())
            .finish()
    }
}

impl SearchIndex {
    /// Documents are numbered in the order given (0..n).
    pub fn build<'a>(docs: impl IntoIterator<Item = Doc<'a>>) -> Self {
        // Read every tool first: the length normalisation needs each field's average length.
        let mut vocabulary = Vocabulary::new();
        let counted: Vec<Counted> = docs
            .into_iter()
            .map(|doc| Counted::of(doc, &mut vocabulary))
            .collect();
        let n = counted.len();
        let mut average = [0f32; FIELDS];
        for doc in &counted {
            for (sum, &length) in average.iter_mut().zip(&doc.lengths) {
                *sum += length as f32;
            }
        }
        for sum in &mut average {
            // A field no tool has never contributes (its counts are all zero); 1 avoids 0/0.
            *sum = if *sum > 0.0 { *sum / n as f32 } else { 1.0 };
        }

        // Lay the postings out term by term (a counting sort), documents in order within each.
        let terms = vocabulary.terms;
        let mut df = vec![0u32; terms.len()];
        for doc in &counted {
            for &(id, _) in &doc.terms {
                df[id as usize] += 1;
            }
        }
        let mut starts = Vec::with_capacity(df.len() + 1);
        starts.push(0u32);
        for &d in &df {
            starts.push(starts[starts.len() - 1] + d);
        }
        let mut next: Vec<u32> = starts[..df.len()].to_vec();
        let mut postings = vec![Posting { doc: 0, score: 0.0 }; df.iter().sum::<u32>() as usize];
        for (number, doc) in counted.iter().enumerate() {
            let norm: [f32; FIELDS] =
                std::array::from_fn(|f| 1.0 - B + B * doc.lengths[f] as f32 / average[f]);
            for &(id, tf) in &doc.terms {
                // BM25F: the fields' normalised, weighted counts are added up first and
                // saturated once, so a term repeated across fields does not count without end.
                let weighted: f32 = (0..FIELDS)
                    .map(|f| WEIGHTS[f] * f32::from(tf[f]) / norm[f])
                    .sum();
                let d = df[id as usize] as f32;
                let idf = (1.0 + (n as f32 - d + 0.5) / (d + 0.5)).ln();
                let slot = &mut next[id as usize];
                postings[*slot as usize] = Posting {
                    doc: number as u32,
                    score: idf * weighted * (K1 + 1.0) / (K1 + weighted),
                };
                *slot += 1;
            }
        }

        SearchIndex {
            docs: n,
            terms,
            starts,
            postings,
        }
    }

    /// How many tools were indexed.
    pub fn len(&self) -> usize {
        self.docs
    }

    /// Whether no tool was indexed.
    pub fn is_empty(&self) -> bool {
        self.docs == 0
    }

    /// The best `limit` documents for `query` among those `visible` accepts, best first;
    /// documents sharing no term with the query are never returned. Ties broken by document
    /// number (stable).
    pub fn search(&self, query: &str, limit: usize, visible: impl Fn(usize) -> bool) -> Vec<Hit> {
        if limit == 0 {
            return Vec::new();
        }
        let stemmer = Stemmer::create(Algorithm::English);
        let mut ids: Vec<u32> = Vec::new();
        words(query, |word| {
            if let Some(&id) = self.terms.get(&*stemmer.stem(word)) {
                ids.push(id);
            }
        });
        // A word said twice in a query does not make it count twice.
        ids.sort_unstable();
        ids.dedup();

        let mut scores: HashMap<u32, f32> = HashMap::new();
        for id in ids {
            let range = self.starts[id as usize] as usize..self.starts[id as usize + 1] as usize;
            for posting in &self.postings[range] {
                *scores.entry(posting.doc).or_insert(0.0) += posting.score;
            }
        }

        // Best first, then ask `visible` only until `limit` are found: asking is the costly
        // part (a policy decision per tool), ranking every match is not.
        let mut ranked: Vec<Hit> = scores
            .into_iter()
            .map(|(doc, score)| Hit {
                doc: doc as usize,
                score,
            })
            .collect();
        ranked.sort_unstable_by(|a, b| b.score.total_cmp(&a.score).then(a.doc.cmp(&b.doc)));
        ranked
            .into_iter()
            .filter(|hit| visible(hit.doc))
            .take(limit)
            .collect()
    }
}

/// The top-level parameters of an input schema: `properties`' names and their schemas.
fn parameters(schema: &Map<String, Value>) -> impl Iterator<Item = (&str, &Map<String, Value>)> {
    schema
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(name, value)| (name.as_str(), value.as_object()))
        .filter_map(|(name, value)| Some((name, value?)))
}

/// One tool as read for the index: how many tokens each field has, and for each distinct term
/// its count in each field.
struct Counted {
    lengths: [u32; FIELDS],
    terms: Vec<(u32, [u16; FIELDS])>,
}

impl Counted {
    fn of(doc: Doc<'_>, vocabulary: &mut Vocabulary) -> Self {
        let mut occurrences: Vec<(u32, usize)> = Vec::new();
        let mut add = |field: usize, text: &str| {
            words(text, |word| {
                occurrences.push((vocabulary.term(word), field))
            });
        };
        add(NAME, doc.name);
        add(TITLE, doc.title.unwrap_or_default());
        add(DESCRIPTION, doc.description.unwrap_or_default());
        for (param, schema) in parameters(doc.input_schema) {
            add(PARAM_NAME, param);
            if let Some(text) = schema.get("description").and_then(Value::as_str) {
                add(PARAM_DESCRIPTION, text);
            }
        }

        occurrences.sort_unstable();
        let mut counted = Counted {
            lengths: [0; FIELDS],
            terms: Vec::new(),
        };
        for (id, field) in occurrences {
            counted.lengths[field] = counted.lengths[field].saturating_add(1);
            match counted.terms.last_mut() {
                Some((last, tf)) if *last == id => tf[field] = tf[field].saturating_add(1),
                _ => {
                    let mut tf = [0; FIELDS];
                    tf[field] = 1;
                    counted.terms.push((id, tf));
                }
            }
        }
        counted
    }
}

/// Stems words and numbers the distinct terms. It remembers the term of each word it has seen:
/// a catalog repeats the same few thousand words, and stemming is the costly step.
struct Vocabulary {
    stemmer: Stemmer,
    words: HashMap<Box<str>, u32>,
    terms: HashMap<Box<str>, u32>,
}

impl Vocabulary {
    fn new() -> Self {
        Vocabulary {
            stemmer: Stemmer::create(Algorithm::English),
            words: HashMap::new(),
            terms: HashMap::new(),
        }
    }

    /// The number of `word`'s term.
    fn term(&mut self, word: &str) -> u32 {
        if let Some(&id) = self.words.get(word) {
            return id;
        }
        let stem = self.stemmer.stem(word);
        let id = match self.terms.get(&*stem) {
            Some(&id) => id,
            None => {
                let id = self.terms.len() as u32;
                self.terms.insert(stem.into(), id);
                id
            }
        };
        self.words.insert(word.into(), id);
        id
    }
}

/// Calls `emit` with each word of `text` that can tell tools apart: lowercased, without stop
/// words, not yet stemmed. Tools and queries go through the same steps.
fn words(text: &str, mut emit: impl FnMut(&str)) {
    let mut lower = String::new();
    for run in text.split(|c: char| !c.is_alphanumeric()) {
        identifier_parts(run, |part| {
            if part.len() > MAX_TOKEN_BYTES {
                return;
            }
            lower.clear();
            lower.extend(part.chars().flat_map(char::to_lowercase));
            // A lone letter ("s" of "user's", "x") matches too much to mean anything.
            let mut chars = lower.chars();
            let lone_letter =
                matches!((chars.next(), chars.next()), (Some(c), None) if !c.is_numeric());
            if !lone_letter && !STOP_WORDS.contains(&lower.as_str()) {
                emit(&lower);
            }
        });
    }
}

/// The words inside one alphanumeric run: a new word starts at an uppercase letter that follows
/// a lowercase letter or a digit (`listRepos`, `v2Items`), or that ends a run of capitals
/// (`HTTPServer` → HTTP, Server). Digits stay with the letters before them (`s3`, `base64`).
fn identifier_parts(run: &str, mut emit: impl FnMut(&str)) {
    let mut start = 0;
    let mut before: Option<char> = None;
    let mut chars = run.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        if let Some(b) = before {
            let next_lower = chars.peek().is_some_and(|&(_, n)| n.is_lowercase());
            if c.is_uppercase()
                && (b.is_lowercase() || b.is_numeric() || (b.is_uppercase() && next_lower))
            {
                emit(&run[start..at]);
                start = at;
            }
        }
        before = Some(c);
    }
    if start < run.len() {
        emit(&run[start..]);
    }
}

#[cfg(test)]
#[path = "search_tests.rs"]
mod tests;
