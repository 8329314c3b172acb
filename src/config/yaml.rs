//! A small YAML tree that remembers where every node came from, built from
//! `saphyr-parser` events, so that configuration errors can name a line.

use saphyr_parser::{Event, Parser, ScalarStyle, Span};
use std::collections::HashMap;

/// Expanding aliases can blow a small file up exponentially ("billion laughs"); refuse
/// documents whose tree would exceed this many nodes.
const MAX_NODES: usize = 1_000_000;
/// Deeper nesting than this is certainly a mistake (and would recurse deeply).
const MAX_DEPTH: usize = 256;

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `~`, `null`, or nothing at all.
    Null,
    /// Any other scalar. `plain` is false for quoted and block scalars and for `!!str`
    /// tagged ones: those are always strings, never numbers or booleans.
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub value: Value,
    /// 1-based line of the node's first character.
    pub line: usize,
}

impl Node {
    pub fn is_null(&self) -> bool {
        matches!(self.value, Value::Null)
    }

    /// A short description of the node's type, for error messages.
    pub fn kind(&self) -> &'static str {
        match &self.value {
            Value::Null => "null",
            Value::Scalar { plain: false, .. } => "a string",
            Value::Scalar { .. } => "a scalar",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

/// A document with the line its content starts on.
pub struct Document {
    pub root: Node,
}

/// A YAML syntax error: the parser stops at the first one.
#[derive(Debug)]
pub struct SyntaxError {
    pub line: usize,
    pub message: String,
}

/// Parses every document of a stream. Documents that parsed before a syntax error are
/// returned alongside it, so their own errors can still be reported.
pub fn parse_documents(text: &str) -> (Vec<Document>, Option<SyntaxError>) {
    let mut builder = Builder::default();
    let mut docs = Vec::new();
    for item in Parser::new_from_str(text) {
        match item {
            Ok((event, span)) => match builder.event(event, span) {
                Ok(Some(root)) => docs.push(Document { root }),
                Ok(None) => {}
                Err(e) => return (docs, Some(e)),
            },
            Err(e) => {
                return (
                    docs,
                    Some(SyntaxError {
                        line: e.marker().line(),
                        message: e.info().to_string(),
                    }),
                )
            }
        }
    }
    (docs, None)
}

enum Frame {
    Seq(Node, Option<usize>),
    /// The mapping, a pending key, and the anchor.
    Map(Node, Option<Node>, Option<usize>),
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    nodes: usize,
    done: Option<Node>,
}

fn is_null_plain(s: &str) -> bool {
    matches!(s, "" | "~" | "null" | "Null" | "NULL")
}

fn count_nodes(n: &Node) -> usize {
    1 + match &n.value {
        Value::Seq(items) => items.iter().map(count_nodes).sum(),
        Value::Map(pairs) => pairs
            .iter()
            .map(|(k, v)| count_nodes(k) + count_nodes(v))
            .sum(),
        _ => 0,
    }
}

impl Builder {
    fn event(&mut self, event: Event<'_>, span: Span) -> Result<Option<Node>, SyntaxError> {
        let line = span.start.line().max(1);
        match event {
            Event::StreamStart | Event::StreamEnd | Event::Nothing => {}
            Event::DocumentStart(_) => {
                self.stack.clear();
                self.anchors.clear();
                self.nodes = 0;
                self.done = None;
            }
            Event::DocumentEnd => {
                let root = self.done.take().unwrap_or(Node {
                    value: Value::Null,
                    line,
                });
                return Ok(Some(root));
            }
            Event::Alias(id) => {
                let Some(node) = self.anchors.get(&id).cloned() else {
                    return Err(SyntaxError {
                        line,
                        message: "alias to an unknown anchor".into(),
                    });
                };
                self.nodes += count_nodes(&node);
                self.check_size(line)?;
                // The alias is used where it is written.
                let node = Node { line, ..node };
                self.push_value(node);
            }
            Event::Scalar(text, style, anchor, tag) => {
                let string_tag = tag
                    .as_ref()
                    .is_some_and(|t| t.is_yaml_core_schema() && t.suffix == "str");
                let plain = style == ScalarStyle::Plain && !string_tag;
                let value = if plain && is_null_plain(&text) {
                    Value::Null
                } else {
                    Value::Scalar {
                        text: text.into_owned(),
                        plain,
                    }
                };
                self.nodes += 1;
                self.check_size(line)?;
                let node = Node { value, line };
                if anchor > 0 {
                    self.anchors.insert(anchor, node.clone());
                }
                self.push_value(node);
            }
            Event::SequenceStart(anchor, _) => {
                self.open(line)?;
                let anchor = (anchor > 0).then_some(anchor);
                self.stack.push(Frame::Seq(
                    Node {
                        value: Value::Seq(Vec::new()),
                        line,
                    },
                    anchor,
                ));
            }
            Event::MappingStart(anchor, _) => {
                self.open(line)?;
                let anchor = (anchor > 0).then_some(anchor);
                self.stack.push(Frame::Map(
                    Node {
                        value: Value::Map(Vec::new()),
                        line,
                    },
                    None,
                    anchor,
                ));
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match self.stack.pop() {
                    Some(Frame::Seq(n, a)) | Some(Frame::Map(n, _, a)) => (n, a),
                    None => {
                        return Err(SyntaxError {
                            line,
                            message: "unbalanced collection end".into(),
                        })
                    }
                };
                if let Some(a) = anchor {
                    self.anchors.insert(a, node.clone());
                }
                self.push_value(node);
            }
        }
        Ok(None)
    }

    fn open(&mut self, line: usize) -> Result<(), SyntaxError> {
        self.nodes += 1;
        self.check_size(line)?;
        if self.stack.len() >= MAX_DEPTH {
            return Err(SyntaxError {
                line,
                message: format!("nesting deeper than {MAX_DEPTH} levels"),
            });
        }
        Ok(())
    }

    fn check_size(&self, line: usize) -> Result<(), SyntaxError> {
        if self.nodes > MAX_NODES {
            return Err(SyntaxError {
                line,
                message: format!("document expands to more than {MAX_NODES} nodes (aliases?)"),
            });
        }
        Ok(())
    }

    fn push_value(&mut self, node: Node) {
        match self.stack.last_mut() {
            None => self.done = Some(node),
            Some(Frame::Seq(seq, _)) => {
                if let Value::Seq(items) = &mut seq.value {
                    items.push(node);
                }
            }
            Some(Frame::Map(map, pending, _)) => match pending.take() {
                None => *pending = Some(node),
                Some(key) => {
                    if let Value::Map(pairs) = &mut map.value {
                        pairs.push((key, node));
                    }
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_lines_and_styles() {
        let (docs, err) = parse_documents("a: 1\nb:\n  - x\n  - \"y\"\n---\nc: ~\n");
        assert!(err.is_none());
        assert_eq!(docs.len(), 2);
        let Value::Map(pairs) = &docs[0].root.value else {
            panic!()
        };
        assert_eq!(pairs[1].0.line, 2);
        let Value::Seq(items) = &pairs[1].1.value else {
            panic!()
        };
        assert_eq!(items[1].line, 4);
        assert_eq!(
            items[1].value,
            Value::Scalar {
                text: "y".into(),
                plain: false
            }
        );
        let Value::Map(pairs) = &docs[1].root.value else {
            panic!()
        };
        assert!(pairs[0].1.is_null());
    }

    #[test]
    fn aliases_expand_and_syntax_errors_have_lines() {
        let (docs, err) = parse_documents("a: &x {k: v}\nb: *x\n");
        assert!(err.is_none());
        let Value::Map(pairs) = &docs[0].root.value else {
            panic!()
        };
        assert_eq!(pairs[0].1.value, pairs[1].1.value);
        let (_, err) = parse_documents("a: 1\nb: [1, 2\n");
        assert!(err.unwrap().line >= 2);
    }
}
