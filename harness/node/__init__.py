"""The single-node cluster the chart is tested on (make test-cluster)."""
