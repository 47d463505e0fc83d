//! Round-robin order of the polled queues (pure).

/// A configured queue and its server id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueRef {
    /// Queue name.
    pub name: String,
    /// Server id.
    pub id: String,
}

/// Queues in polling order. After a queue gives an item it moves to the end, so every
/// queue is served (as W&B's agent does).
#[derive(Clone, Debug)]
pub struct QueueRing {
    order: Vec<QueueRef>,
}

impl QueueRing {
    /// Queues in configured order.
    pub fn new(queues: Vec<QueueRef>) -> Self {
        Self { order: queues }
    }

    /// The current order.
    pub fn order(&self) -> &[QueueRef] {
        &self.order
    }

    /// `name` gave an item: move it to the end.
    pub fn served(&mut self, name: &str) {
        if let Some(index) = self.order.iter().position(|q| q.name == name) {
            let queue = self.order.remove(index);
            self.order.push(queue);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(names: &[&str]) -> QueueRing {
        QueueRing::new(
            names
                .iter()
                .map(|n| QueueRef {
                    name: (*n).into(),
                    id: format!("id-{n}"),
                })
                .collect(),
        )
    }

    fn names(ring: &QueueRing) -> Vec<&str> {
        ring.order().iter().map(|q| q.name.as_str()).collect()
    }

    #[test]
    fn a_queue_that_gave_an_item_goes_last() {
        let mut ring = ring(&["a", "b", "c"]);
        ring.served("a");
        assert_eq!(names(&ring), ["b", "c", "a"]);
        ring.served("c");
        assert_eq!(names(&ring), ["b", "a", "c"]);
        ring.served("nope");
        assert_eq!(names(&ring), ["b", "a", "c"]);
    }
}
