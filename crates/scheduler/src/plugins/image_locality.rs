//! ImageLocality: nodes that already have the pod's images score higher, by image size
//! scaled by how widely the image is spread (so one node holding a popular image does not
//! attract every pod).

use std::collections::HashMap;

use crate::nodeinfo::{NodeInfo, PodInfo};

const MB: i64 = 1024 * 1024;
const MIN_THRESHOLD: i64 = 23 * MB;
const MAX_CONTAINER_THRESHOLD: i64 = 1000 * MB;

/// `name:latest` when the image names no tag.
pub fn normalized_image_name(name: &str) -> String {
    if name.rfind(':').map(|i| i as isize).unwrap_or(-1) <= name.rfind('/').map(|i| i as isize).unwrap_or(-1)
    {
        format!("{name}:latest")
    } else {
        name.to_string()
    }
}

/// Scores for the feasible nodes; `spread` is the number of nodes holding each image name
/// and `total_nodes` the cluster size.
pub fn score(
    pod: &PodInfo,
    feasible: &[&NodeInfo],
    spread: &HashMap<String, usize>,
    total_nodes: usize,
) -> Vec<i64> {
    let spec = pod.pod.spec.as_ref();
    let images: Vec<String> = spec
        .map(|s| s.init_containers.iter().flatten().chain(s.containers.iter()))
        .into_iter()
        .flatten()
        .map(|c| normalized_image_name(c.image.as_deref().unwrap_or("")))
        .collect();
    let max_threshold = MAX_CONTAINER_THRESHOLD * images.len() as i64;
    feasible
        .iter()
        .map(|n| {
            let mut sum: i64 = 0;
            for img in &images {
                if let Some(size) = n.images.get(img) {
                    let holders = spread.get(img).copied().unwrap_or(1) as f64;
                    sum += (*size as f64 * (holders / total_nodes.max(1) as f64)) as i64;
                }
            }
            if max_threshold <= MIN_THRESHOLD {
                return 0;
            }
            let clamped = sum.clamp(MIN_THRESHOLD, max_threshold);
            super::MAX_NODE_SCORE * (clamped - MIN_THRESHOLD) / (max_threshold - MIN_THRESHOLD)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{node_with_images, pod_with_image};

    #[test]
    fn image_names_without_a_tag_mean_latest() {
        assert_eq!(normalized_image_name("nginx"), "nginx:latest");
        assert_eq!(normalized_image_name("nginx:1.25"), "nginx:1.25");
        assert_eq!(normalized_image_name("localhost:5000/app"), "localhost:5000/app:latest");
    }

    #[test]
    fn nodes_with_large_images_score_higher_scaled_by_spread() {
        // Upstream's example: a 250 MB image on one of two nodes, one container.
        let a = NodeInfo::new(node_with_images("a", &[("gcr.io/250:latest", 250 * MB)]).into());
        let b = NodeInfo::new(node_with_images("b", &[]).into());
        let p = PodInfo::new(pod_with_image("p", "gcr.io/250").into());
        let spread = HashMap::from([("gcr.io/250:latest".to_string(), 1usize)]);
        let s = score(&p, &[&a, &b], &spread, 2);
        // 250MB * 1/2 = 125MB -> 100 * (125 - 23) / (1000 - 23) = 10
        assert_eq!(s, vec![10, 0]);
    }
}
