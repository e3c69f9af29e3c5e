package dev.edgegateway.batch;

import java.util.Map;

/**
 * One device reading of a telemetry batch. {@code (gatewayId, seq)} identifies it. seq and
 * deviceSeq are unsigned 64-bit numbers held in a long (print them with
 * {@link Long#toUnsignedString(long)}); bootId is unsigned 32-bit, 0 = unknown.
 *
 * @param timeMs event time, ms since the Unix epoch, by the device's clock
 * @param tags the record's tags (labels such as site), in their order; may be empty
 * @param metrics metric name to value, in the device's order
 */
public record TelemetryRecord(long seq, String device, long deviceSeq, long timeMs, long bootId,
                              Map<String, String> tags, Map<String, Double> metrics) {}
