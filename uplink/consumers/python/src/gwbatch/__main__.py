"""python -m gwbatch: the Kafka command (gwbatch.kafka)."""
from gwbatch.kafka import main

raise SystemExit(main())
