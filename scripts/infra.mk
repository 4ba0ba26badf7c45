# Local infrastructure for streaming runs and integration tests (include from the Makefile).
# Everything is downloaded/built once into $(AMPEL_CACHE) (default ~/.cache/ampel-monitor),
# outside the clone. Ports, versions and paths: see the usage text of each script.

INFRA_DIR := $(dir $(lastword $(MAKEFILE_LIST)))

.PHONY: kafka-up kafka-down kafka-status kafka-wipe prism flink-job-server flink-up flink-down flink-status

# Single-node KRaft broker on 127.0.0.1:$KAFKA_PORT (default 19092); returns when it answers.
kafka-up:
	bash $(INFRA_DIR)kafka.sh start

kafka-down:
	bash $(INFRA_DIR)kafka.sh stop

kafka-status:
	bash $(INFRA_DIR)kafka.sh status

# Stop and delete the broker's data dir.
kafka-wipe:
	bash $(INFRA_DIR)kafka.sh stop --wipe

# Beam Prism runner binary for the installed apache-beam (--prism_location).
prism:
	bash $(INFRA_DIR)prism.sh build

# Beam Flink job-server jar (--flink_job_server_jar).
flink-job-server:
	bash $(INFRA_DIR)flink-job-server.sh fetch

# Standalone Flink 1.19 (REST and web UI on 127.0.0.1:$FLINK_REST_PORT, default 18081;
# 2 slots; checkpoints under $AMPEL_CACHE/flink-data) with the Python worker pool
# (127.0.0.1:$FLINK_WORKER_POOL_PORT, default 15100); returns when the slots are up.
# Submit: scripts/flink.sh submit --flink-master 127.0.0.1:18081 --config monitor.yaml
flink-up: $(STAMP) flink-job-server
	bash $(INFRA_DIR)flink.sh start

# WIPE=1 also deletes checkpoints and savepoints.
flink-down:
	bash $(INFRA_DIR)flink.sh stop $(if $(filter 1 yes true,$(WIPE)),--wipe,)

flink-status:
	bash $(INFRA_DIR)flink.sh status
