package dev.edgegateway.batch;

import java.util.List;
import java.util.Map;

/**
 * A decoded upstream batch. It covers the gateway sequence numbers firstSeq..lastSeq (unsigned
 * 64-bit, held in longs) and carries one record type: telemetry in {@code records} or closed
 * windows in {@code aggregates} (the other list is empty), in increasing seq order; a seq of the
 * range without an entry was skipped on purpose by the gateway.
 *
 * @param formatVersion 1 (rows) or 2 (columnar): the layout the value had
 * @param recordType "telemetry" or "aggregate"
 * @param headers the message's headers (Kafka) or properties, as given to the decoder
 */
public record Batch(String gatewayId, long firstSeq, long lastSeq, int formatVersion, String recordType,
                    List<TelemetryRecord> records, List<Aggregate> aggregates, Map<String, String> headers) {}
