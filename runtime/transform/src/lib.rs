//! Input transforms: what a Trigger hands its handler instead of the event's own `data`
//! (EventBridge's input transformer, with expressions). A transform names values in the event
//! with input paths (`order: $.data.order.id`) and builds JSON from them with a template:
//!
//! ```text
//! {"order": <order>, "gross": ${round(total * 1.2, 2)}, "note": "order <order> from ${upper($.source)}"}
//! ```
//!
//! `<name>` is a named value, as in EventBridge; `${…}` is an expression in a small language
//! that has no loops, no variables and no user functions, so an evaluation's cost is bounded by
//! the template's size and the event's ([`expr`] lists what it has). A placeholder outside a
//! string is replaced by the JSON value; inside a string by its text.
//!
//! Owns: the template and expression languages, checked when a manifest is validated and
//! compiled once per Trigger. Must not know: CloudEvents types, buses or manifests; callers pass
//! the event in its JSON form (`$`) and the Trigger's name.

pub mod expr;
mod func;
mod template;

use std::fmt;

use serde_json::Value;

/// Largest template accepted (bytes).
pub const MAX_TEMPLATE_BYTES: usize = 16 * 1024;
/// Largest value a transform may build (bytes of JSON text): the largest event a bus takes.
pub const MAX_OUTPUT_BYTES: usize = 1 << 20;
/// Deepest nesting of template values and of expressions together.
pub const MAX_DEPTH: usize = 64;
/// Names a template may use without an input path.
pub const BUILTINS: [&str; 2] = ["event", "trigger"];

/// A compiled transform.
#[derive(Clone, Debug)]
pub struct Transform {
    root: template::Node,
    /// Kept to turn the byte offset of an evaluation error into a line and column.
    template: String,
}

/// Where a compile error is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Place {
    /// The input path of this name (`inputPaths.<name>`).
    InputPath(String),
    /// A position in the template, both from 1 (columns count characters).
    Template { line: usize, column: usize },
}

/// A problem found while compiling a transform.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    pub place: Place,
    pub message: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.place {
            Place::InputPath(name) => write!(f, "inputPaths.{name}: {}", self.message),
            Place::Template { line, column } => {
                write!(f, "template line {line}, column {column}: {}", self.message)
            }
        }
    }
}

/// A transform that could not be applied to one event: a type error in an expression
/// (`"a" * 2`), a division by zero, an output over [`MAX_OUTPUT_BYTES`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvalError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "template line {}, column {}: {}",
            self.line, self.column, self.message
        )
    }
}

impl std::error::Error for EvalError {}

/// What a transform may read besides the event.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    /// The Trigger's `namespace/name` (the name `trigger`).
    pub trigger: &'a str,
}

impl Transform {
    /// Compiles `template` with the named `input_paths`; every problem found, each with its
    /// place.
    pub fn compile<'a>(
        input_paths: impl IntoIterator<Item = (&'a str, &'a str)>,
        template: &str,
    ) -> Result<Self, Vec<Error>> {
        let mut errors = Vec::new();
        let mut names = expr::Names::default();
        for (name, path) in input_paths {
            let problem = if !expr::is_identifier(name) {
                Some(format!(
                    "{name:?} is not a name: use letters, digits and _, not starting with a digit"
                ))
            } else if BUILTINS.contains(&name) || expr::is_keyword(name) {
                Some(format!("{name:?} is reserved; choose another name"))
            } else {
                None
            };
            if let Some(message) = problem {
                errors.push(Error {
                    place: Place::InputPath(name.to_owned()),
                    message,
                });
                continue;
            }
            match expr::parse_path(path) {
                Ok(p) => names.insert(name, p),
                Err(message) => errors.push(Error {
                    place: Place::InputPath(name.to_owned()),
                    message,
                }),
            }
        }
        if template.len() > MAX_TEMPLATE_BYTES {
            errors.push(Error {
                place: Place::Template { line: 1, column: 1 },
                message: format!(
                    "is {} bytes, over the limit of {MAX_TEMPLATE_BYTES}",
                    template.len()
                ),
            });
            return Err(errors);
        }
        match template::parse(template, &names) {
            Ok(root) if errors.is_empty() => Ok(Self {
                root,
                template: template.to_owned(),
            }),
            Ok(_) => Err(errors),
            Err(e) => {
                let (line, column) = position(template, e.at);
                errors.push(Error {
                    place: Place::Template { line, column },
                    message: e.message,
                });
                Err(errors)
            }
        }
    }

    /// The handler's input built from `event` (a CloudEvent in its JSON form).
    pub fn apply(&self, event: &Value, cx: Context<'_>) -> Result<Value, EvalError> {
        template::render(&self.root, event, cx).map_err(|e| {
            let (line, column) = position(&self.template, e.at);
            EvalError {
                line,
                column,
                message: e.message,
            }
        })
    }
}

/// An error at a byte offset of the template, before it is given a line and column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct At {
    pub at: usize,
    pub message: String,
}

impl At {
    pub(crate) fn new(at: usize, message: impl Into<String>) -> Self {
        Self {
            at,
            message: message.into(),
        }
    }
}

/// 1-based line and column (in characters) of byte offset `at` in `text`.
fn position(text: &str, at: usize) -> (usize, usize) {
    let at = at.min(text.len());
    let before = text.get(..at).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests;
