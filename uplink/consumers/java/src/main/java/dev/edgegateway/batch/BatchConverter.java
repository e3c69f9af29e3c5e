package dev.edgegateway.batch;

import java.util.ArrayList;
import java.util.Date;
import java.util.List;
import java.util.Map;
import org.apache.kafka.connect.data.Schema;
import org.apache.kafka.connect.data.SchemaAndValue;
import org.apache.kafka.connect.data.SchemaBuilder;
import org.apache.kafka.connect.data.Struct;
import org.apache.kafka.connect.data.Timestamp;
import org.apache.kafka.connect.errors.DataException;
import org.apache.kafka.common.header.Headers;
import org.apache.kafka.connect.storage.Converter;

/**
 * A Kafka Connect {@link Converter} for sink connectors reading the gateway's topics ({@code
 * value.converter=dev.edgegateway.batch.BatchConverter}): each message becomes one Struct of schema
 * {@link #BATCH_SCHEMA} whose {@code records} (or {@code aggregates}) array holds one Struct per
 * record, with a schema ({@link #RECORD_SCHEMA}, {@link #AGGREGATE_SCHEMA}). A Converter gives one
 * Connect record per message, so a sink that wants one row per reading flattens the array (for
 * example with its own explode option). Unsigned 64-bit numbers (seq, device_seq, count) are INT64
 * with the same bits. Read-only: fromConnectData throws (the gateway is the only writer).
 * Thread-safe after configure (no state).
 */
public class BatchConverter implements Converter {
  // (before the schemas: their initialisers read them)
  private static final String[] AGGREGATE_LONGS = {"seq", "id", "window_start_ms", "window_end_ms", "closed_at_ms",
      "count", "first_time_ms", "last_time_ms"};
  private static final String[] AGGREGATE_DOUBLES = {"sum", "min", "max", "mean", "stddev", "first", "last", "rate",
      "p50", "p90", "p99"};

  public static final Schema RECORD_SCHEMA = SchemaBuilder.struct().name("dev.edgegateway.batch.Record")
      .field("seq", Schema.INT64_SCHEMA)
      .field("device", Schema.STRING_SCHEMA)
      .field("device_seq", Schema.INT64_SCHEMA)
      .field("time_ms", Schema.INT64_SCHEMA)
      .field("time", Timestamp.SCHEMA)
      .field("boot_id", Schema.INT64_SCHEMA)
      .field("tags", SchemaBuilder.map(Schema.STRING_SCHEMA, Schema.STRING_SCHEMA).build())
      .field("metrics", SchemaBuilder.map(Schema.STRING_SCHEMA, Schema.FLOAT64_SCHEMA).build())
      .build();

  public static final Schema AGGREGATE_SCHEMA = aggregateSchema();

  public static final Schema BATCH_SCHEMA = SchemaBuilder.struct().name("dev.edgegateway.batch.Batch")
      .field("gateway_id", Schema.STRING_SCHEMA)
      .field("first_seq", Schema.INT64_SCHEMA)
      .field("last_seq", Schema.INT64_SCHEMA)
      .field("format_version", Schema.INT32_SCHEMA)
      .field("record_type", Schema.STRING_SCHEMA)
      .field("records", SchemaBuilder.array(RECORD_SCHEMA).build())
      .field("aggregates", SchemaBuilder.array(AGGREGATE_SCHEMA).build())
      .build();

  private static Schema aggregateSchema() {
    final SchemaBuilder b = SchemaBuilder.struct().name("dev.edgegateway.batch.Aggregate");
    for (String f : AGGREGATE_LONGS) b.field(f, Schema.INT64_SCHEMA);
    for (String f : new String[] {"kind", "scope", "key", "group_tag", "metric"}) b.field(f, Schema.STRING_SCHEMA);
    for (String f : AGGREGATE_DOUBLES) b.field(f, Schema.FLOAT64_SCHEMA);
    b.field("has_quantiles", Schema.BOOLEAN_SCHEMA);
    return b.build();
  }

  @Override
  public void configure(Map<String, ?> configs, boolean isKey) {}

  @Override
  public byte[] fromConnectData(String topic, Schema schema, Object value) {
    throw new DataException("BatchConverter is read-only: the gateway writes its batches itself");
  }

  @Override
  public SchemaAndValue toConnectData(String topic, byte[] value) {
    return toConnectData(topic, (Headers) null, value);
  }

  @Override
  public SchemaAndValue toConnectData(String topic, Headers headers, byte[] value) {
    if (value == null) return SchemaAndValue.NULL;
    final Map<String, String> h = BatchDeserializer.headerMap(headers);
    final Batch batch;
    try {
      batch = BatchDecoder.decode(value, h);
    } catch (BatchFormatException e) {
      throw new DataException("topic " + topic + ": not a gateway batch: " + e.getMessage(), e);
    }
    return new SchemaAndValue(BATCH_SCHEMA, toStruct(batch));
  }

  /** The Struct of a decoded batch (schema BATCH_SCHEMA). */
  public static Struct toStruct(Batch batch) {
    final List<Struct> records = new ArrayList<>(batch.records().size());
    for (TelemetryRecord r : batch.records()) {
      records.add(new Struct(RECORD_SCHEMA).put("seq", r.seq()).put("device", r.device())
          .put("device_seq", r.deviceSeq()).put("time_ms", r.timeMs()).put("time", new Date(r.timeMs()))
          .put("boot_id", r.bootId()).put("tags", r.tags()).put("metrics", r.metrics()));
    }
    final List<Struct> aggregates = new ArrayList<>(batch.aggregates().size());
    for (Aggregate a : batch.aggregates()) {
      aggregates.add(new Struct(AGGREGATE_SCHEMA).put("seq", a.seq()).put("id", a.id())
          .put("window_start_ms", a.windowStartMs()).put("window_end_ms", a.windowEndMs())
          .put("closed_at_ms", a.closedAtMs()).put("count", a.count()).put("first_time_ms", a.firstTimeMs())
          .put("last_time_ms", a.lastTimeMs()).put("kind", a.kind()).put("scope", a.scope()).put("key", a.key())
          .put("group_tag", a.groupTag()).put("metric", a.metric()).put("sum", a.sum()).put("min", a.min())
          .put("max", a.max()).put("mean", a.mean()).put("stddev", a.stddev()).put("first", a.first())
          .put("last", a.last()).put("rate", a.rate()).put("p50", a.p50()).put("p90", a.p90()).put("p99", a.p99())
          .put("has_quantiles", a.hasQuantiles()));
    }
    return new Struct(BATCH_SCHEMA).put("gateway_id", batch.gatewayId()).put("first_seq", batch.firstSeq())
        .put("last_seq", batch.lastSeq()).put("format_version", batch.formatVersion())
        .put("record_type", batch.recordType()).put("records", records).put("aggregates", aggregates);
  }
}
