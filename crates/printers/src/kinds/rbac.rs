//! Printers of rbac.authorization.k8s.io: RoleBinding and ClusterRoleBinding. Role
//! and ClusterRole have none upstream and use the default printer.

use jiff::Timestamp;
use serde_json::Value;

use super::core::age;
use crate::Printer;
use crate::columns::{AGE, NAME, col, wide};
use crate::value::{arr_at, name, s, str_at};

pub(crate) static ROLE_BINDING: Printer = Printer {
    columns: &[
        NAME,
        col("Role", "string", "The Role or ClusterRole granted, as Kind/name."),
        AGE,
        wide("Users", "string", "Users the binding grants the role to."),
        wide("Groups", "string", "Groups the binding grants the role to."),
        wide(
            "ServiceAccounts",
            "string",
            "Service accounts the binding grants the role to, as namespace/name.",
        ),
    ],
    row: binding_row,
};

pub(crate) static CLUSTER_ROLE_BINDING: Printer = Printer { columns: ROLE_BINDING.columns, row: binding_row };

fn binding_row(obj: &Value, now: Timestamp) -> Vec<Value> {
    let (mut users, mut groups, mut service_accounts) = (Vec::new(), Vec::new(), Vec::new());
    for subject in arr_at(obj, "/subjects") {
        let subject_name = str_at(subject, "/name");
        match str_at(subject, "/kind") {
            "ServiceAccount" => {
                service_accounts.push(format!("{}/{subject_name}", str_at(subject, "/namespace")))
            }
            "User" => users.push(subject_name.to_string()),
            "Group" => groups.push(subject_name.to_string()),
            _ => {}
        }
    }
    vec![
        s(name(obj)),
        s(format!("{}/{}", str_at(obj, "/roleRef/kind"), str_at(obj, "/roleRef/name"))),
        age(obj, now),
        s(users.join(", ")),
        s(groups.join(", ")),
        s(service_accounts.join(", ")),
    ]
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::kinds::testing::{headers, narrow_headers, render};

    #[test]
    fn bindings_list_subjects_by_kind() {
        assert_eq!(narrow_headers(&CLUSTER_ROLE_BINDING), ["Name", "Role", "Age"]);
        assert_eq!(headers(&ROLE_BINDING)[3..], ["Users", "Groups", "ServiceAccounts"]);
        let crb = json!({"metadata": {"name": "cluster-admin", "creationTimestamp": "2024-04-01T12:00:00Z"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [
                {"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "system:masters"},
                {"kind": "User", "name": "alice"}, {"kind": "User", "name": "bob"},
                {"kind": "ServiceAccount", "name": "deployer", "namespace": "ci"}]});
        assert_eq!(
            render(&CLUSTER_ROLE_BINDING, &crb),
            [
                json!("cluster-admin"),
                json!("ClusterRole/cluster-admin"),
                json!("30d"),
                json!("alice, bob"),
                json!("system:masters"),
                json!("ci/deployer")
            ]
        );
        let rb = json!({"metadata": {"name": "read"}, "roleRef": {"kind": "Role", "name": "pod-reader"}});
        assert_eq!(render(&ROLE_BINDING, &rb)[3..], [json!(""), json!(""), json!("")]);
    }
}
