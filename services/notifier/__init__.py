"""The notifier: tier crossings from rep snapshots, delivered exactly once on the channels each rep chose."""
