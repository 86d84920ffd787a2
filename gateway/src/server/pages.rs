//! Listings served in pages: `tools/list`, `prompts/list`, `resources/list` and
//! `resources/templates/list` answer at most `[catalog] page_size` items and a `nextCursor`.
//!
//! The rule: a cursor is the sort key of the last item served (a tool's or prompt's name, a
//! resource's URI, a template's URI template and target), and the next page starts at the
//! first item after it in the view's order. So a cursor outlives a reload or a catalog
//! change: the client continues after the last item it saw, an item added before that point
//! is not shown to it and one removed is simply absent — never a failure, a repeat or a
//! skipped item that was there all along. Nothing is kept per client.
//!
//! A cursor is not secret and carries no authority (a caller only ever pages through what it
//! may list), so it is encoded, not encrypted: the listing kind, the key, and a digest that
//! catches a truncated, altered or made-up cursor and one of another listing (-32602). The
//! digest is unkeyed, so cursors survive a restart and work across replicas.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rmcp::ErrorData;
use sha2::{Digest, Sha256};

/// Which listing a cursor belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    Tools,
    Prompts,
    Resources,
    Templates,
}

impl Listing {
    fn tag(self) -> u8 {
        match self {
            Self::Tools => b't',
            Self::Prompts => b'p',
            Self::Resources => b'r',
            Self::Templates => b'u',
        }
    }

    fn method(self) -> &'static str {
        match self {
            Self::Tools => "tools/list",
            Self::Prompts => "prompts/list",
            Self::Resources => "resources/list",
            Self::Templates => "resources/templates/list",
        }
    }
}

/// An item's place in its listing's order: its primary key and, for templates (which two
/// targets may share), the target's name; `""` otherwise.
pub type Key<'a> = (&'a str, &'a str);

/// Version of the cursor encoding, so a later change can refuse older cursors clearly.
const VERSION: u8 = 1;
/// Bytes of the digest kept in a cursor.
const DIGEST_LEN: usize = 8;

fn digest(payload: &[u8]) -> [u8; DIGEST_LEN] {
    let full = Sha256::new()
        .chain_update(b"portcullis listing cursor\0")
        .chain_update(payload)
        .finalize();
    let mut out = [0; DIGEST_LEN];
    out.copy_from_slice(&full[..DIGEST_LEN]);
    out
}

/// The cursor that continues `listing` after `key`.
pub fn encode(listing: Listing, key: Key<'_>) -> String {
    let mut bytes = Vec::with_capacity(key.0.len() + key.1.len() + 3 + DIGEST_LEN);
    bytes.extend([VERSION, listing.tag()]);
    bytes.extend(key.0.as_bytes());
    bytes.push(0);
    bytes.extend(key.1.as_bytes());
    let sum = digest(&bytes);
    bytes.extend(sum);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The key a cursor of `listing` continues after; -32602 for anything the gateway did not
/// issue for this listing.
pub fn decode(listing: Listing, cursor: &str) -> Result<(String, String), ErrorData> {
    let refused = || {
        ErrorData::invalid_params(
            format!(
                "the cursor of this {} request is not one the gateway issued for {} (it may be cut short or altered); list again without a cursor to start from the first page",
                listing.method(),
                listing.method()
            ),
            None,
        )
    };
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| refused())?;
    let split = bytes.len().checked_sub(DIGEST_LEN).ok_or_else(refused)?;
    let (payload, sum) = bytes.split_at(split);
    if digest(payload) != sum {
        return Err(refused());
    }
    let [version, tag, key @ ..] = payload else {
        return Err(refused());
    };
    if *version != VERSION || *tag != listing.tag() {
        return Err(refused());
    }
    let text = std::str::from_utf8(key).map_err(|_| refused())?;
    let (first, second) = text.split_once('\0').ok_or_else(refused)?;
    Ok((first.to_string(), second.to_string()))
}

/// One page of `items` (sorted by `key`): the first `size` items after `cursor` that `keep`
/// accepts, and the cursor of the next page when more follow.
pub fn page<T: Clone>(
    listing: Listing,
    items: &[T],
    key: impl Fn(&T) -> Key<'_>,
    cursor: Option<&str>,
    size: usize,
    keep: impl Fn(&T) -> bool,
) -> Result<(Vec<T>, Option<String>), ErrorData> {
    let start = match cursor {
        Some(c) => {
            let (first, second) = decode(listing, c)?;
            let after = (first.as_str(), second.as_str());
            items.partition_point(|item| key(item) <= after)
        }
        None => 0,
    };
    let size = size.max(1);
    let mut served = Vec::with_capacity(size.min(items.len() - start));
    let mut more = false;
    for item in items[start..].iter().filter(|i| keep(i)) {
        if served.len() == size {
            more = true;
            break;
        }
        served.push(item.clone());
    }
    let next = match served.last() {
        Some(last) if more => Some(encode(listing, key(last))),
        _ => None,
    };
    Ok((served, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        let mut v: Vec<String> = (0..n).map(|i| format!("tool_{i:05}")).collect();
        v.sort();
        v
    }

    // `page` hands the key function a `&T`, here `&String`.
    #[allow(clippy::ptr_arg)]
    fn key(s: &String) -> Key<'_> {
        (s.as_str(), "")
    }

    /// Every page in turn, from the first.
    fn all_pages(
        items: &[String],
        size: usize,
        keep: impl Fn(&String) -> bool,
    ) -> Vec<Vec<String>> {
        let mut pages = vec![];
        let mut cursor = None;
        loop {
            let (items, next) =
                page(Listing::Tools, items, key, cursor.as_deref(), size, &keep).unwrap();
            pages.push(items);
            match next {
                Some(n) => cursor = Some(n),
                None => return pages,
            }
        }
    }

    #[test]
    fn pages_cover_every_item_once_in_order() {
        let items = names(1003);
        let pages = all_pages(&items, 100, |_| true);
        assert_eq!(pages.len(), 11);
        assert!(pages[..10].iter().all(|p| p.len() == 100));
        assert_eq!(pages.concat(), items);
    }

    #[test]
    fn an_exact_multiple_ends_without_an_empty_page() {
        let pages = all_pages(&names(300), 100, |_| true);
        assert_eq!(pages.len(), 3);
    }

    #[test]
    fn a_page_counts_only_the_items_the_caller_may_see() {
        let items = names(1000);
        let even = |s: &String| s.ends_with(['0', '2', '4', '6', '8']);
        let pages = all_pages(&items, 100, even);
        assert_eq!(pages.len(), 5);
        assert!(pages.iter().all(|p| p.len() == 100));
        let expected: Vec<_> = items.iter().filter(|s| even(s)).cloned().collect();
        assert_eq!(pages.concat(), expected);
    }

    #[test]
    fn a_cursor_continues_after_its_item_when_the_list_changed_between_pages() {
        let mut items = names(10);
        let (first, next) = page(Listing::Tools, &items, key, None, 4, |_| true).unwrap();
        assert_eq!(first.last().unwrap(), "tool_00003");
        // A reload removes the last item served and one after it, and adds one before it.
        items.retain(|s| s != "tool_00003" && s != "tool_00005");
        items.push("tool_00001a".into());
        items.sort();
        let (second, _) = page(Listing::Tools, &items, key, next.as_deref(), 4, |_| true).unwrap();
        assert_eq!(
            second,
            ["tool_00004", "tool_00006", "tool_00007", "tool_00008"]
        );
    }

    #[test]
    fn a_cursor_of_another_listing_or_altered_or_garbage_is_refused_with_32602() {
        let cursor = encode(Listing::Prompts, ("tool_00001", ""));
        let mut altered = URL_SAFE_NO_PAD.decode(&cursor).unwrap();
        altered[3] ^= 1;
        let altered = URL_SAFE_NO_PAD.encode(altered);
        for bad in [
            cursor.as_str(),
            altered.as_str(),
            "not a cursor",
            "",
            &cursor[..cursor.len() - 2],
        ] {
            let e = page(Listing::Tools, &names(5), key, Some(bad), 2, |_| true).unwrap_err();
            assert_eq!(e.code, rmcp::model::ErrorCode::INVALID_PARAMS, "{bad}");
            assert!(e.message.contains("without a cursor"), "{}", e.message);
        }
        assert!(decode(Listing::Prompts, &cursor).is_ok());
    }

    #[test]
    fn template_keys_keep_two_targets_offering_one_template_apart() {
        fn key<'a>(t: &'a (&str, &str)) -> Key<'a> {
            (t.1, t.0)
        }
        let items = vec![("a", "x://{id}"), ("b", "x://{id}"), ("a", "y://{id}")];
        let (first, next) = page(Listing::Templates, &items, key, None, 1, |_| true).unwrap();
        assert_eq!(first, [("a", "x://{id}")]);
        let (second, _) = page(Listing::Templates, &items, key, next.as_deref(), 1, |_| {
            true
        })
        .unwrap();
        assert_eq!(second, [("b", "x://{id}")]);
    }
}
