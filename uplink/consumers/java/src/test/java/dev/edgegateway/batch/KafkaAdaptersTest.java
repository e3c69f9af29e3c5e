package dev.edgegateway.batch;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Map;
import org.apache.kafka.common.errors.SerializationException;
import org.apache.kafka.common.header.internals.RecordHeaders;
import org.apache.kafka.connect.data.SchemaAndValue;
import org.apache.kafka.connect.data.Struct;
import org.apache.kafka.connect.errors.DataException;
import org.junit.jupiter.api.Test;

/** The Kafka Deserializer and the Connect Converter on the shared vectors. */
class KafkaAdaptersTest {
  static RecordHeaders kafkaHeaders(Map<String, String> h) {
    final RecordHeaders out = new RecordHeaders();
    h.forEach((k, v) -> out.add(k, v.getBytes(StandardCharsets.UTF_8)));
    return out;
  }

  @Test
  void theDeserializerChecksHeadersAndGivesTheBatch() throws Exception {
    final Vectors.Vector v = Vectors.load("v2_telemetry_basic");
    try (BatchDeserializer d = new BatchDeserializer()) {
      final Batch b = d.deserialize("telemetry", kafkaHeaders(v.headers()), v.value());
      assertEquals("gw-vectors", b.gatewayId());
      assertEquals(12, b.records().size());
      assertEquals(v.headers(), b.headers());
      assertEquals(b.records(), d.deserialize("telemetry", v.value()).records());
      assertNull(d.deserialize("telemetry", null));
      final Vectors.Vector bad = Vectors.load("bad_header_last_seq");
      final SerializationException e = assertThrows(SerializationException.class,
          () -> d.deserialize("telemetry", kafkaHeaders(bad.headers()), bad.value()));
      assertInstanceOf(BatchFormatException.class, e.getCause());
      assertEquals(BatchFormatException.Kind.HEADER_MISMATCH, ((BatchFormatException) e.getCause()).kind());
    }
  }

  @Test
  void theConverterGivesOneStructPerRecordWithItsSchema() throws Exception {
    final Vectors.Vector v = Vectors.load("v2_telemetry_tags_boot");
    final BatchConverter c = new BatchConverter();
    c.configure(Map.of(), false);
    final SchemaAndValue sv = c.toConnectData("telemetry", kafkaHeaders(v.headers()), v.value());
    assertEquals(BatchConverter.BATCH_SCHEMA, sv.schema());
    final Struct batch = (Struct) sv.value();
    batch.validate();
    final List<?> records = batch.getArray("records");
    assertEquals(6, records.size());
    final Struct r = (Struct) records.get(4);
    assertEquals(BatchConverter.RECORD_SCHEMA, r.schema());
    assertEquals("thermo-c", r.getString("device"));
    assertEquals(Map.of("t", 18.0, "rssi", -71.0), r.getMap("metrics"));
    assertEquals(Map.of("site", ""), r.getMap("tags"));
    assertEquals(1L, r.getInt64("boot_id"));
    assertEquals(r.getInt64("time_ms"), ((java.util.Date) r.get("time")).getTime());
    assertThrows(DataException.class, () -> c.fromConnectData("t", sv.schema(), sv.value()));
    assertThrows(DataException.class, () -> c.toConnectData("t", Vectors.load("bad_not_zstd").value()));
  }

  @Test
  void theConverterCarriesAggregates() throws Exception {
    final Vectors.Vector v = Vectors.load("v2_aggregate_group");
    final Struct batch = (Struct) new BatchConverter().toConnectData("telemetry-aggregates", v.value()).value();
    batch.validate();
    assertEquals("aggregate", batch.getString("record_type"));
    final Struct a = (Struct) batch.getArray("aggregates").get(0);
    assertEquals("group", a.getString("scope"));
    assertEquals("site", a.getString("group_tag"));
    assertEquals(1200L, a.getInt64("count"));
  }
}
