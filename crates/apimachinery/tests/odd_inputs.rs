//! Deterministic random inputs thrown at every entry point: nothing may panic.

use apimachinery::{fields, labels, managedfields, openapi_ext, strategicpatch, validation};
use serde_json::{Map, Value, json};

/// xorshift64*: small, deterministic, no dependencies.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const KEYS: &[&str] = &[
    "name",
    "value",
    "mergingList",
    "mergingIntList",
    "nonMergingList",
    "simpleMap",
    "retainKeysMap",
    "$patch",
    "$retainKeys",
    "$setElementOrder/mergingList",
    "$setElementOrder/mergingIntList",
    "$deleteFromPrimitiveList/mergingIntList",
    "$deleteFromPrimitiveList",
    "metadata",
    "spec",
    "containers",
    "finalizers",
    "labels",
];

fn random_value(rng: &mut Rng, depth: usize) -> Value {
    let choice = if depth == 0 { rng.below(5) } else { rng.below(8) };
    match choice {
        0 => Value::Null,
        1 => json!(rng.below(4)),
        2 => json!(*rng.pick(&["replace", "delete", "merge", "a", "", "name"])),
        3 => json!(rng.below(2) == 0),
        4 => json!(1.5),
        5 | 6 => {
            let mut m = Map::new();
            for _ in 0..rng.below(4) {
                m.insert(rng.pick(KEYS).to_string(), random_value(rng, depth - 1));
            }
            Value::Object(m)
        }
        _ => Value::Array((0..rng.below(4)).map(|_| random_value(rng, depth - 1)).collect()),
    }
}

fn random_object(rng: &mut Rng) -> Value {
    match random_value(rng, 4) {
        v @ Value::Object(_) => v,
        other => json!({ "name": other }),
    }
}

fn random_text(rng: &mut Rng, alphabet: &[&str]) -> String {
    (0..rng.below(12)).map(|_| *rng.pick(alphabet)).collect()
}

fn definitions() -> Map<String, Value> {
    let Value::Object(mut defs) = json!({
        "item": {"properties": {
            "name": {"type": "string"},
            "mergingList": {"type": "array", "items": {"$ref": "#/definitions/item"},
                "x-kubernetes-patch-strategy": "merge", "x-kubernetes-patch-merge-key": "name",
                "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
            "mergingIntList": {"type": "array", "items": {"type": "integer"},
                "x-kubernetes-patch-strategy": "merge", "x-kubernetes-list-type": "set"},
            "simpleMap": {"type": "object", "additionalProperties": {"type": "string"}},
            "retainKeysMap": {"$ref": "#/definitions/item", "x-kubernetes-patch-strategy": "retainKeys",
                "x-kubernetes-map-type": "atomic"},
            "metadata": {"$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
        }},
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta": {"properties": {
            "finalizers": {"type": "array", "items": {"type": "string"}},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}}
        }}
    }) else {
        unreachable!()
    };
    openapi_ext::annotate(&mut defs);
    defs
}

#[test]
fn strategic_merge_patch_never_panics_on_random_documents() {
    let defs = definitions();
    let meta = strategicpatch::OpenApiPatchMeta::new(&defs, "item");
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..3000 {
        let original = random_object(&mut rng);
        let patch = random_object(&mut rng);
        let _ = strategicpatch::apply(&original, &patch, &meta);
        let _ = strategicpatch::apply(&original, &patch, &strategicpatch::NoPatchMeta);
    }
}

#[test]
fn server_side_apply_never_panics_on_random_documents() {
    let defs = definitions();
    let typed = managedfields::TypeRef::new(&defs, "item");
    let untyped = managedfields::TypeRef::untyped();
    let manager = managedfields::Manager {
        name: "fuzz",
        api_version: "v1",
        subresource: "",
        time: "2024-01-01T00:00:00Z",
    };
    let other = managedfields::Manager { name: "other", ..manager };
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    for _ in 0..1500 {
        let live = random_object(&mut rng);
        let applied = random_object(&mut rng);
        for ty in [&typed, &untyped] {
            let Ok((obj, _)) = managedfields::apply(&live, &applied, &other, true, ty) else {
                continue;
            };
            let next = random_object(&mut rng);
            let _ = managedfields::apply(&obj, &next, &manager, false, ty);
            let _ = managedfields::apply(&obj, &next, &other, false, ty);
            let _ = managedfields::update_managed_fields(&obj, &next, &manager, ty);
        }
    }
}

#[test]
fn selectors_and_validators_never_panic_on_random_text() {
    let alphabet = [
        "a", "b", "1", "-", "_", ".", "/", "=", "!", ",", " ", "(", ")", "<", ">", "\\", "in", "notin", "é",
        "\0", "\t", "%",
    ];
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    for _ in 0..5000 {
        let text = random_text(&mut rng, &alphabet);
        if let Ok(sel) = labels::Selector::parse(&text) {
            // The canonical form parses back to the same selector.
            let again = labels::Selector::parse(&sel.to_string());
            assert_eq!(again.as_ref().ok(), Some(&sel), "{text:?} -> {sel}");
        }
        if let Ok(sel) = fields::Selector::parse(&text) {
            let _ = sel.matches(|_| None);
        }
        let _ = validation::is_qualified_name(&text);
        let _ = validation::is_valid_label_value(&text);
        let _ = validation::is_dns1123_subdomain(&text);
        let _ = validation::NameRule::Dns1035Label.validate(&text, true);
        let _ = validation::generate_name(&text);
    }
}
