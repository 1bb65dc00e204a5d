//! Introspection queries get limits of their own. The query GraphiQL, Apollo, Postman and
//! graphql-codegen send nests about 15 fields deep (its `ofType` chain alone is nine), past
//! the depth limit that keeps data queries cheap; refusing it left the IDE without schema or
//! docs and code generators without input. An operation that asks only about the schema runs
//! under [`MAX_DEPTH`]; so that depth cannot be spent multiplying the schema by itself
//! (`fields { type { fields { type ... } } }`), its list fields may nest at most
//! [`MAX_LIST_NESTING`] deep, as in the standard query (`types`, then `fields`, then `args`).

use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};

/// Deepest introspection query accepted.
pub const MAX_DEPTH: usize = 20;

/// Introspection fields that return lists, nested at most this deep.
pub const MAX_LIST_NESTING: usize = 3;

/// Introspection fields whose value is a list.
const LIST_FIELDS: [&str; 8] =
    ["types", "fields", "args", "inputFields", "interfaces", "possibleTypes", "enumValues", "directives"];

/// Fragment spreads followed at most (a cycle is invalid GraphQL, refused later anyway).
const MAX_SPREADS: usize = 64;

/// What a query document asks.
#[derive(Debug, PartialEq, Eq)]
pub enum Asks {
    /// Only about the schema, within [`MAX_LIST_NESTING`].
    Schema,
    /// Only about the schema, but multiplying it: refused with this message.
    TooMuchSchema(String),
    /// Data (or anything that does not parse: the schema reports that).
    Data,
}

/// Whether every operation of `query` selects only `__schema`, `__type` and `__typename`.
pub fn classify(query: &str) -> Asks {
    let Ok(document) = async_graphql::parser::parse_query(query) else {
        return Asks::Data;
    };
    let mut only_schema = true;
    for (_, operation) in document.operations.iter() {
        only_schema &= top_level_names(&document, &operation.node.selection_set.node, 0)
            .is_some_and(|names| names.iter().all(|name| name.starts_with("__")));
    }
    if !only_schema {
        return Asks::Data;
    }
    let nesting = document
        .operations
        .iter()
        .map(|(_, operation)| list_nesting(&document, &operation.node.selection_set.node, 0))
        .max()
        .unwrap_or(0);
    if nesting > MAX_LIST_NESTING {
        return Asks::TooMuchSchema(format!(
            "introspection lists nest {nesting} deep; at most {MAX_LIST_NESTING} are allowed (types, fields, args)"
        ));
    }
    Asks::Schema
}

/// The names of the fields a selection set selects at its own level, through fragments.
fn top_level_names(document: &ExecutableDocument, set: &SelectionSet, spreads: usize) -> Option<Vec<String>> {
    let mut names = Vec::new();
    for selection in &set.items {
        match &selection.node {
            Selection::Field(field) => names.push(field.node.name.node.to_string()),
            Selection::InlineFragment(fragment) => {
                names.extend(top_level_names(document, &fragment.node.selection_set.node, spreads)?)
            }
            Selection::FragmentSpread(spread) => {
                let fragment = document.fragments.get(&spread.node.fragment_name.node)?;
                if spreads >= MAX_SPREADS {
                    return None;
                }
                names.extend(top_level_names(document, &fragment.node.selection_set.node, spreads + 1)?);
            }
        }
    }
    Some(names)
}

/// How deep list-valued introspection fields nest under `set`.
fn list_nesting(document: &ExecutableDocument, set: &SelectionSet, spreads: usize) -> usize {
    if spreads > MAX_SPREADS {
        return usize::MAX;
    }
    set.items
        .iter()
        .map(|selection| match &selection.node {
            Selection::Field(field) => {
                let inner = list_nesting(document, &field.node.selection_set.node, spreads);
                let own = usize::from(LIST_FIELDS.contains(&field.node.name.node.as_str()));
                inner.saturating_add(own)
            }
            Selection::InlineFragment(fragment) => {
                list_nesting(document, &fragment.node.selection_set.node, spreads)
            }
            Selection::FragmentSpread(spread) => document
                .fragments
                .get(&spread.node.fragment_name.node)
                .map_or(0, |fragment| list_nesting(document, &fragment.node.selection_set.node, spreads + 1)),
        })
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_questions_are_told_from_data_and_multiplying_ones_are_refused() {
        assert_eq!(classify("{ __schema { types { name fields { name args { name } } } } }"), Asks::Schema);
        assert_eq!(classify("query { __typename }"), Asks::Schema);
        assert_eq!(classify("{ __typename jobs { total } }"), Asks::Data);
        assert_eq!(
            classify("{ ...F } fragment F on Query { __schema { queryType { name } } }"),
            Asks::Schema
        );
        assert_eq!(classify("not graphql"), Asks::Data);
        assert!(matches!(
            classify("{ __schema { types { fields { type { fields { args { name } } } } } } }"),
            Asks::TooMuchSchema(_)
        ));
        assert!(matches!(
            classify("{ ...A } fragment A on Query { ...A }"),
            Asks::Data | Asks::TooMuchSchema(_)
        ));
    }
}
