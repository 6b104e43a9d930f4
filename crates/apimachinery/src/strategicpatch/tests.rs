use super::*;
use serde_json::json;

/// A schema shaped like upstream's test type: merging and non-merging lists of maps
/// and of integers, a plain map, a retainKeys map and a replace-strategy map.
fn definitions() -> Map<String, Value> {
    let defs = json!({
        "mergeItem": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "value": {"type": "string"},
                "other": {"type": "string"},
                "mergingList": {
                    "type": "array",
                    "items": {"$ref": "#/definitions/mergeItem"},
                    "x-kubernetes-patch-strategy": "merge",
                    "x-kubernetes-patch-merge-key": "name"
                },
                "nonMergingList": {"type": "array", "items": {"$ref": "#/definitions/mergeItem"}},
                "mergingIntList": {
                    "type": "array",
                    "items": {"type": "integer"},
                    "x-kubernetes-patch-strategy": "merge"
                },
                "nonMergingIntList": {"type": "array", "items": {"type": "integer"}},
                "simpleMap": {"type": "object", "additionalProperties": {"type": "string"}},
                "retainKeysMap": {
                    "allOf": [{"$ref": "#/definitions/mergeItem"}],
                    "x-kubernetes-patch-strategy": "retainKeys"
                },
                "retainKeysMergingList": {
                    "type": "array",
                    "items": {"$ref": "#/components/schemas/mergeItem"},
                    "x-kubernetes-patch-strategy": "merge,retainKeys",
                    "x-kubernetes-patch-merge-key": "name"
                },
                "replacingItem": {
                    "type": "object",
                    "x-kubernetes-patch-strategy": "replace"
                },
                "mapOfLists": {
                    "type": "object",
                    "additionalProperties": {"type": "array", "items": {"$ref": "#/definitions/mergeItem"}}
                }
            }
        }
    });
    match defs {
        Value::Object(m) => m,
        _ => unreachable!(),
    }
}

fn patch(original: Value, p: Value) -> Result<Value, Error> {
    let defs = definitions();
    let meta = OpenApiPatchMeta::new(&defs, "mergeItem");
    apply(&original, &p, &meta)
}

#[test]
fn patches_apply_as_upstream_specifies() {
    // (description, original, patch, expected)
    let cases = [
        ("nil patch leaves the object alone", json!({"name": "a"}), json!({}), json!({"name": "a"})),
        ("add field to map", json!({"name": 1}), json!({"value": 1}), json!({"name": 1, "value": 1})),
        ("null deletes a field", json!({"name": 1, "value": 1}), json!({"value": null}), json!({"name": 1})),
        (
            "null for a missing field is dropped",
            json!({"name": 1}),
            json!({"value": null}),
            json!({"name": 1}),
        ),
        (
            "delete field from nested map",
            json!({"simpleMap": {"key1": 1, "key2": 1}}),
            json!({"simpleMap": {"key2": null}}),
            json!({"simpleMap": {"key1": 1}}),
        ),
        (
            "$patch: delete empties a nested map",
            json!({"simpleMap": {"key1": 1, "key2": 1}}),
            json!({"simpleMap": {"$patch": "delete"}}),
            json!({"simpleMap": {}}),
        ),
        (
            "$patch: replace at the root replaces everything",
            json!({"name": 1, "value": 1}),
            json!({"$patch": "replace"}),
            json!({}),
        ),
        (
            "$patch: replace with content keeps only the content",
            json!({"name": 1, "value": 1}),
            json!({"other": "a", "$patch": "replace"}),
            json!({"other": "a"}),
        ),
        (
            "non-merging int list is replaced",
            json!({"nonMergingIntList": [1, 2]}),
            json!({"nonMergingIntList": [2, 3]}),
            json!({"nonMergingIntList": [2, 3]}),
        ),
        (
            "merging int list is a union without duplicates",
            json!({"mergingIntList": [1, 2]}),
            json!({"mergingIntList": [2, 3]}),
            json!({"mergingIntList": [1, 2, 3]}),
        ),
        (
            "new items of a merging primitive list come first",
            json!({"mergingIntList": [1, 2]}),
            json!({"mergingIntList": [3]}),
            json!({"mergingIntList": [3, 1, 2]}),
        ),
        (
            "preserve the order from the patch in a merging int list",
            json!({"mergingIntList": [1, 2, 3]}),
            json!({"mergingIntList": [3, 1]}),
            json!({"mergingIntList": [2, 3, 1]}),
        ),
        (
            "preserve the order from the patch in a merging list",
            json!({"mergingList": [{"name": 1}, {"name": 2, "value": "b"}, {"name": 3}]}),
            json!({"mergingList": [{"name": 3, "value": "c"}, {"name": 1, "value": "a"}, {"name": 2, "other": "x"}]}),
            json!({"mergingList": [{"name": 3, "value": "c"}, {"name": 1, "value": "a"}, {"name": 2, "value": "b", "other": "x"}]}),
        ),
        (
            "live-only items stay ahead of later patch items",
            json!({"mergingList": [{"name": 1}, {"name": 2, "value": "b"}, {"name": 3}]}),
            json!({"mergingList": [{"name": 3, "value": "c"}, {"name": 1, "value": "a"}]}),
            json!({"mergingList": [{"name": 2, "value": "b"}, {"name": 3, "value": "c"}, {"name": 1, "value": "a"}]}),
        ),
        (
            "new map items are added before live-only ones",
            json!({"mergingList": [{"name": "a"}]}),
            json!({"mergingList": [{"name": "b"}]}),
            json!({"mergingList": [{"name": "b"}, {"name": "a"}]}),
        ),
        (
            "non-merging list of maps is replaced",
            json!({"nonMergingList": [{"name": 1, "value": 1}]}),
            json!({"nonMergingList": [{"name": 2}]}),
            json!({"nonMergingList": [{"name": 2}]}),
        ),
        (
            "delete map from merging list",
            json!({"mergingList": [{"name": 1}, {"name": 2}]}),
            json!({"mergingList": [{"name": 1, "$patch": "delete"}]}),
            json!({"mergingList": [{"name": 2}]}),
        ),
        (
            "delete missing map from merging list is a no-op",
            json!({"mergingList": [{"name": 1}, {"name": 2}]}),
            json!({"mergingList": [{"name": 3, "$patch": "delete"}]}),
            json!({"mergingList": [{"name": 1}, {"name": 2}]}),
        ),
        (
            "delete all duplicate entries in a merging list",
            json!({"mergingList": [{"name": 1}, {"name": 1}, {"name": 2, "value": "a"}, {"name": 3}, {"name": 3}]}),
            json!({"mergingList": [{"name": 1, "$patch": "delete"}, {"name": 3, "$patch": "delete"}]}),
            json!({"mergingList": [{"name": 2, "value": "a"}]}),
        ),
        (
            "a $patch: replace item replaces the whole list",
            json!({"mergingList": [{"name": 1}, {"name": 2}]}),
            json!({"mergingList": [{"name": 3, "value": "x"}, {"$patch": "replace"}]}),
            json!({"mergingList": [{"name": 3, "value": "x"}]}),
        ),
        (
            "a lone $patch: replace item empties the list",
            json!({"mergingList": [{"name": 1}, {"name": 2}]}),
            json!({"mergingList": [{"$patch": "replace"}]}),
            json!({"mergingList": []}),
        ),
        (
            "merge empty merging lists",
            json!({"mergingList": []}),
            json!({"mergingList": []}),
            json!({"mergingList": []}),
        ),
        (
            "delete field from map in merging list",
            json!({"mergingList": [{"name": 1, "value": 1, "other": "a"}, {"name": 2}]}),
            json!({"mergingList": [{"name": 1, "value": null}]}),
            json!({"mergingList": [{"name": 1, "other": "a"}, {"name": 2}]}),
        ),
        (
            "replace non merging list nested in merging list",
            json!({"mergingList": [{"name": 1, "nonMergingList": [{"name": 1}, {"name": 2}]}]}),
            json!({"mergingList": [{"name": 1, "nonMergingList": [{"name": 3}]}]}),
            json!({"mergingList": [{"name": 1, "nonMergingList": [{"name": 3}]}]}),
        ),
        (
            "add field to map in merging list nested in merging list",
            json!({"mergingList": [{"name": 1, "mergingList": [{"name": 1}, {"name": 2, "value": 2}]}, {"name": 2}]}),
            json!({"mergingList": [{"name": 1, "mergingList": [{"name": 1, "value": 1}]}]}),
            json!({"mergingList": [{"name": 1, "mergingList": [{"name": 1, "value": 1}, {"name": 2, "value": 2}]}, {"name": 2}]}),
        ),
        (
            "$deleteFromPrimitiveList removes values from a merging list",
            json!({"mergingIntList": [1, 2, 3]}),
            json!({"$deleteFromPrimitiveList/mergingIntList": [2]}),
            json!({"mergingIntList": [1, 3]}),
        ),
        (
            "$deleteFromPrimitiveList removes values from a non-merging list",
            json!({"nonMergingIntList": [1, 2, 3]}),
            json!({"$deleteFromPrimitiveList/nonMergingIntList": [2]}),
            json!({"nonMergingIntList": [1, 3]}),
        ),
        (
            "$deleteFromPrimitiveList of a missing item changes nothing",
            json!({"mergingIntList": [1, 2]}),
            json!({"$deleteFromPrimitiveList/mergingIntList": [3]}),
            json!({"mergingIntList": [1, 2]}),
        ),
        (
            "$deleteFromPrimitiveList on a missing list adds nothing",
            json!({"foo": ["bar"]}),
            json!({"$deleteFromPrimitiveList/mergingIntList": [3]}),
            json!({"foo": ["bar"]}),
        ),
        (
            "$deleteFromPrimitiveList and additions together",
            json!({"mergingIntList": [1, 2, 3]}),
            json!({"$setElementOrder/mergingIntList": [1, 3, 4], "$deleteFromPrimitiveList/mergingIntList": [2], "mergingIntList": [4]}),
            json!({"mergingIntList": [1, 3, 4]}),
        ),
        (
            "set elements order in a list",
            json!({"mergingList": [{"name": 1}, {"name": 2}, {"name": 3}]}),
            json!({"$setElementOrder/mergingList": [{"name": 3}, {"name": 1}, {"name": 2}]}),
            json!({"mergingList": [{"name": 3}, {"name": 1}, {"name": 2}]}),
        ),
        (
            "set elements order keeps server-only items after their live predecessors",
            json!({"mergingList": [{"name": 1, "other": "a"}, {"name": 2, "value": 2}, {"name": 7}, {"name": 9}, {"name": 8}, {"name": 3, "value": 3}, {"name": 4, "value": 4}]}),
            json!({"$setElementOrder/mergingList": [{"name": 2}, {"name": 1}, {"name": 4}, {"name": 3}]}),
            json!({"mergingList": [{"name": 2, "value": 2}, {"name": 1, "other": "a"}, {"name": 7}, {"name": 9}, {"name": 8}, {"name": 4, "value": 4}, {"name": 3, "value": 3}]}),
        ),
        (
            "set elements order with a server-only item at the end",
            json!({"mergingList": [{"name": 1, "other": "a"}, {"name": 3, "value": 3}, {"name": 4, "value": 4}, {"name": 2, "value": 2}, {"name": 9}]}),
            json!({"$setElementOrder/mergingList": [{"name": 4}, {"name": 2}, {"name": 3}, {"name": 1}]}),
            json!({"mergingList": [{"name": 4, "value": 4}, {"name": 2, "value": 2}, {"name": 3, "value": 3}, {"name": 1, "other": "a"}, {"name": 9}]}),
        ),
        (
            "set element order with a patch list adds an item in place",
            json!({"mergingList": [{"name": 1}, {"name": 3}]}),
            json!({"$setElementOrder/mergingList": [{"name": 1}, {"name": 2}, {"name": 3}], "mergingList": [{"name": 2, "value": "new"}]}),
            json!({"mergingList": [{"name": 1}, {"name": 2, "value": "new"}, {"name": 3}]}),
        ),
        (
            "set element order on an int list with a server-only item",
            json!({"mergingIntList": [1, 2, 4]}),
            json!({"$setElementOrder/mergingIntList": [1, 2, 3], "mergingIntList": [3]}),
            json!({"mergingIntList": [1, 2, 3, 4]}),
        ),
        (
            "set element order for a merging list with duplicates",
            json!({"mergingList": [{"name": 1}, {"name": 2, "value": "dup1"}, {"name": 3}, {"name": 2, "value": "dup2"}, {"name": 4}]}),
            json!({"$setElementOrder/mergingList": [{"name": 2}, {"name": 1}, {"name": 4}, {"name": 3}, {"name": 2}]}),
            json!({"mergingList": [{"name": 2, "value": "dup1"}, {"name": 2, "value": "dup2"}, {"name": 1}, {"name": 4}, {"name": 3}]}),
        ),
        (
            "set element order for a list the object lacks adds it without directives",
            json!({}),
            json!({"$setElementOrder/mergingList": [{"name": 1}, {"name": 2}], "mergingList": [{"name": 1}, {"name": 2}, {"name": 3, "$patch": "delete"}]}),
            json!({"mergingList": [{"name": 1}, {"name": 2}]}),
        ),
        (
            "retainKeys clears fields not listed",
            json!({"retainKeysMap": {"name": "type1", "value": "foo"}}),
            json!({"retainKeysMap": {"$retainKeys": ["name", "other"], "name": "type2", "other": "bar"}}),
            json!({"retainKeysMap": {"name": "type2", "other": "bar"}}),
        ),
        (
            "retainKeys map can add a field without a directive",
            json!({"retainKeysMap": {"name": "foo"}}),
            json!({"retainKeysMap": {"value": "bar"}}),
            json!({"retainKeysMap": {"name": "foo", "value": "bar"}}),
        ),
        (
            "retainKeys in merging list items",
            json!({"retainKeysMergingList": [{"name": "a", "value": "1"}, {"name": "b", "value": "2"}]}),
            json!({"retainKeysMergingList": [{"name": "a", "$retainKeys": ["name", "other"], "other": "x"}]}),
            json!({"retainKeysMergingList": [{"name": "a", "other": "x"}, {"name": "b", "value": "2"}]}),
        ),
        (
            "replace strategy replaces a map",
            json!({"replacingItem": {"a": 1, "b": 2}}),
            json!({"replacingItem": {"c": 3}}),
            json!({"replacingItem": {"c": 3}}),
        ),
        (
            "unknown fields merge like maps and replace lists",
            json!({"unknown": {"a": 1, "l": [1, 2]}}),
            json!({"unknown": {"b": 2, "l": [3]}}),
            json!({"unknown": {"a": 1, "b": 2, "l": [3]}}),
        ),
        (
            "a new value has its nulls dropped",
            json!({}),
            json!({"simpleMap": {"a": "x", "b": null}}),
            json!({"simpleMap": {"a": "x"}}),
        ),
        (
            "a new map carrying $patch is not added",
            json!({}),
            json!({"simpleMap": {"$patch": "replace", "a": "x"}}),
            json!({}),
        ),
        (
            "a value of another type replaces the original",
            json!({"name": {"a": 1}}),
            json!({"name": "x"}),
            json!({"name": "x"}),
        ),
        (
            "map values with additionalProperties lists are replaced",
            json!({"mapOfLists": {"k": [{"name": 1}]}}),
            json!({"mapOfLists": {"k": [{"name": 2}]}}),
            json!({"mapOfLists": {"k": [{"name": 2}]}}),
        ),
        (
            "directives nested in a new list item are removed from the result",
            json!({"mergingList": [{"name": 1}]}),
            json!({"mergingList": [{"name": 2, "$setElementOrder/mergingList": [{"name": 5}], "mergingList": [{"name": 5}]}]}),
            json!({"mergingList": [{"name": 2, "mergingList": [{"name": 5}]}, {"name": 1}]}),
        ),
        ("null patch is a no-op", json!({"a": 1}), Value::Null, json!({"a": 1})),
        ("null original is read as empty", Value::Null, json!({"a": 1}), json!({"a": 1})),
    ];
    for (description, original, p, expected) in cases {
        match patch(original, p) {
            Ok(got) => assert_eq!(got, expected, "{description}"),
            Err(e) => panic!("{description}: {e}"),
        }
    }
}

#[test]
fn malformed_patches_fail_with_upstream_messages() {
    // (description, original, patch, message fragment, status)
    let cases = [
        (
            "missing merge key",
            json!({"mergingList": [{"name": 1, "value": "a"}]}),
            json!({"mergingList": [{"value": "b"}]}),
            "map: map[value:b] does not contain declared merge key: name",
            500,
        ),
        (
            "$setElementOrder contradicting the patch list",
            json!({"mergingList": [{"name": 1}, {"name": 3}, {"name": 2}]}),
            json!({"$setElementOrder/mergingList": [{"name": 1}, {"name": 2}, {"name": 3}], "mergingList": [{"name": 3, "value": 3}, {"name": 1, "value": 1}]}),
            "doesn't match $setElementOrder list",
            500,
        ),
        (
            "$setElementOrder contradicting the int patch list",
            json!({"mergingIntList": [1, 3, 2]}),
            json!({"$setElementOrder/mergingIntList": [1, 2, 3], "mergingIntList": [3, 1]}),
            "The order in patch list:\n[3 1]\n doesn't match $setElementOrder list:\n[1 2 3]\n",
            500,
        ),
        (
            "unknown map directive",
            json!({}),
            json!({"$patch": "foo"}),
            "unknown patch type: foo in map: map[$patch:foo]",
            500,
        ),
        (
            "$patch: merge on a map",
            json!({"simpleMap": {}}),
            json!({"simpleMap": {"$patch": "merge"}}),
            "unknown patch type: merge",
            500,
        ),
        (
            "$patch: merge in a list",
            json!({"mergingList": [{"name": 1}]}),
            json!({"mergingList": [{"name": 1, "$patch": "merge"}]}),
            "merging lists cannot yet be specified in the patch",
            500,
        ),
        (
            "unknown list directive",
            json!({"mergingList": [{"name": 1}]}),
            json!({"mergingList": [{"name": 1, "$patch": "explode"}]}),
            "unknown patch type: explode in map: map[$patch:explode name:1]",
            500,
        ),
        (
            "delete item without merge key",
            json!({"mergingList": [{"name": 1}]}),
            json!({"mergingList": [{"$patch": "delete"}]}),
            "does not contain declared merge key: name",
            500,
        ),
        (
            "string where a merging list's map is expected",
            json!({"mergingList": [{"name": 1}]}),
            json!({"mergingList": ["x"]}),
            "list element types are not identical: [[map[name:1]] [x]]",
            500,
        ),
        (
            "lists of lists",
            json!({"mergingIntList": [[1]]}),
            json!({"mergingIntList": [[2]]}),
            "lists of lists are not supported",
            422,
        ),
        (
            "retainKeys not a list",
            json!({"retainKeysMap": {}}),
            json!({"retainKeysMap": {"$retainKeys": "name"}}),
            "invalid patch format of retainKeys",
            400,
        ),
        (
            "patch sets a key retainKeys does not list",
            json!({"retainKeysMap": {}}),
            json!({"retainKeysMap": {"$retainKeys": ["name"], "value": "x"}}),
            "invalid patch format of retainKeys",
            400,
        ),
        (
            "malformed $deleteFromPrimitiveList key",
            json!({"mergingIntList": [1]}),
            json!({"$deleteFromPrimitiveListmergingIntList": [1]}),
            "invalid patch format of primitive list",
            400,
        ),
        (
            "malformed $setElementOrder key",
            json!({"mergingIntList": [1]}),
            json!({"$setElementOrderX/mergingIntList": [1]}),
            "invalid patch format of setElementOrder list",
            400,
        ),
        (
            "$setElementOrder that is not a list",
            json!({"mergingIntList": [1]}),
            json!({"$setElementOrder/mergingIntList": "x"}),
            "expected a []interface {}, but received a string",
            500,
        ),
        (
            "merging list of maps whose schema has no merge key",
            json!({"unknown": [{"a": 1}]}),
            json!({"$deleteFromPrimitiveList/unknown": [{"a": 1}]}),
            "cannot merge lists without merge key for struct",
            500,
        ),
        ("non-object patch", json!({}), json!([1]), "invalid JSON document", 400),
    ];
    for (description, original, p, want, status) in cases {
        let err = patch(original, p).expect_err(description);
        assert!(err.to_string().contains(want), "{description}: {err}");
        assert_eq!(err.http_status(), status, "{description}");
    }
}

#[test]
fn non_object_original_is_a_bad_document() {
    assert_eq!(apply(&json!([1]), &json!({}), &NoPatchMeta), Err(Error::BadJsonDoc));
}

#[test]
fn inputs_are_not_modified_and_key_order_is_kept() {
    let original = json!({"b": 1, "a": {"y": 1, "x": 2}, "c": 3});
    let p = json!({"a": {"z": 3, "y": null}, "d": 4});
    let before = (original.clone(), p.clone());
    let got = apply(&original, &p, &NoPatchMeta).unwrap();
    assert_eq!((original.clone(), p.clone()), before);
    let keys: Vec<&String> = got.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["b", "a", "c", "d"]);
    let inner: Vec<&String> = got["a"].as_object().unwrap().keys().collect();
    assert_eq!(inner, ["x", "z"]);
}

#[test]
fn odd_patches_never_panic() {
    let originals = [
        json!({}),
        json!({"mergingList": [{"name": 1}, "x", null, [1]]}),
        json!({"mergingIntList": [null, 1, "a"]}),
        json!({"mergingList": null, "mergingIntList": {"a": 1}}),
        json!({"retainKeysMap": [1], "simpleMap": "x"}),
    ];
    let patches = [
        json!({"mergingList": [null]}),
        json!({"mergingList": [{"name": null}, {"$patch": null}]}),
        json!({"mergingList": [{"name": {"x": 1}}, {"name": [1], "$patch": "delete"}]}),
        json!({"mergingIntList": [null, {"a": 1}]}),
        json!({"$setElementOrder/mergingList": [null, 1], "mergingList": [{"name": 1}]}),
        json!({"$setElementOrder/mergingIntList": [], "mergingIntList": [5]}),
        json!({"$setElementOrder/": [], "$deleteFromPrimitiveList/": [1]}),
        json!({"$retainKeys": [null, {"a": 1}], "a": 1}),
        json!({"$deleteFromPrimitiveList/mergingList": null}),
        json!({"mergingList": {"$patch": "delete"}, "retainKeysMap": {"$retainKeys": []}}),
        json!({"$patch": 5}),
        json!({"simpleMap": {"$patch": ["replace"]}}),
    ];
    for o in &originals {
        for p in &patches {
            let _ = patch(o.clone(), p.clone());
        }
    }
}

#[test]
fn openapi_meta_reads_strategies_through_refs_and_allof() {
    let defs = definitions();
    let meta = OpenApiPatchMeta::new(&defs, "mergeItem");
    let f = meta.field("retainKeysMergingList");
    assert_eq!(f.strategy, Strategy::Merge);
    assert!(f.retain_keys);
    assert_eq!(f.merge_key.as_deref(), Some("name"));
    let nested = f.element.field("mergingList");
    assert_eq!(nested.merge_key.as_deref(), Some("name"));
    let rk = meta.field("retainKeysMap");
    assert_eq!(rk.strategy, Strategy::Default);
    assert!(rk.retain_keys);
    assert_eq!(rk.element.field("mergingList").strategy, Strategy::Merge);
    assert_eq!(meta.field("nope").strategy, Strategy::Default);
    assert_eq!(OpenApiPatchMeta::new(&defs, "missing").field("x").merge_key, None);
}

#[test]
fn reference_cycles_do_not_hang() {
    let defs = match json!({"a": {"$ref": "#/definitions/b"}, "b": {"$ref": "#/definitions/a"}}) {
        Value::Object(m) => m,
        _ => unreachable!(),
    };
    let meta = OpenApiPatchMeta::new(&defs, "a");
    assert_eq!(meta.field("x").strategy, Strategy::Default);
}
