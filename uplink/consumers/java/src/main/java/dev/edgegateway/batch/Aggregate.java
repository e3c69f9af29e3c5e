package dev.edgegateway.batch;

/**
 * One closed window of the gateway's windowing stage (uplink/FORMAT.md, aggregate batches). seq, id
 * and count are unsigned 64-bit numbers held in a long.
 *
 * @param kind tumbling, hopping or session
 * @param scope device (key = the device id) or group (key = the tag value, groupTag = the tag key)
 * @param windowStartMs inclusive, event time
 * @param windowEndMs exclusive
 * @param closedAtMs gateway clock when the window closed
 * @param stddev population standard deviation
 * @param rate count per second of window length
 * @param hasQuantiles whether p50, p90 and p99 hold values
 */
public record Aggregate(long seq, long id, String kind, String scope, String key, String groupTag, String metric,
                        long windowStartMs, long windowEndMs, long closedAtMs, long count, double sum, double min,
                        double max, double mean, double stddev, long firstTimeMs, double first, long lastTimeMs,
                        double last, double rate, boolean hasQuantiles, double p50, double p90, double p99) {}
