package dev.edgegateway.batch;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.math.BigInteger;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;

/**
 * Every shared vector, decoded by the Java reader and compared with its expected JSON field by field
 * (the C++ and Python suites compare the same files). Integers compare as decimal text (unsigned
 * where the format says so), doubles as their IEEE-754 bit patterns.
 */
class VectorsTest {
  @TestFactory
  Stream<DynamicTest> everyVectorDecodesAsItsJsonSays() throws Exception {
    return Vectors.all().stream().map(v -> DynamicTest.dynamicTest(v.name(), () -> {
      final JsonNode want = v.spec().has("error") ? Vectors.JSON.createObjectNode().put("error", v.spec().get("error").asText())
                                                  : v.spec().get("expect");
      final JsonNode got = outcome(v.value(), v.headers());
      final String diff = firstDifference(want, got, v.name());
      if (diff != null) fail(diff);
    }));
  }

  @Test
  void theVectorsCoverWhatTheFormatHas() throws Exception {
    final List<String> names = Vectors.all().stream().map(Vectors.Vector::name).toList();
    assertTrue(names.stream().anyMatch(n -> n.startsWith("v1_")));
    assertTrue(names.stream().anyMatch(n -> n.startsWith("v2_aggregate")));
    assertTrue(names.stream().filter(n -> n.startsWith("bad_")).count() >= 10);
  }

  static JsonNode outcome(byte[] value, Map<String, String> headers) {
    try {
      return asJson(BatchDecoder.decode(value, headers));
    } catch (BatchFormatException e) {
      return Vectors.JSON.createObjectNode().put("error", e.kind().wireName());
    }
  }

  static String bits(double v) {
    return String.format("0x%016x", Double.doubleToRawLongBits(v));
  }

  static BigInteger u64(long v) {
    return new BigInteger(Long.toUnsignedString(v));
  }

  static JsonNode asJson(Batch b) {
    final ObjectNode o = Vectors.JSON.createObjectNode();
    o.put("format_version", b.formatVersion());
    o.put("gateway_id", b.gatewayId());
    o.put("first_seq", u64(b.firstSeq()));
    o.put("last_seq", u64(b.lastSeq()));
    o.put("record_type", b.recordType());
    final ArrayNode records = o.putArray("records");
    for (TelemetryRecord r : b.records()) {
      final ObjectNode j = records.addObject();
      j.put("seq", u64(r.seq()));
      j.put("device", r.device());
      j.put("device_seq", u64(r.deviceSeq()));
      j.put("time_ms", r.timeMs());
      j.put("boot_id", r.bootId());
      final ArrayNode tags = j.putArray("tags");
      r.tags().forEach((k, val) -> tags.addArray().add(k).add(val));
      final ArrayNode metrics = j.putArray("metrics");
      r.metrics().forEach((k, val) -> metrics.addArray().add(k).add(bits(val)));
    }
    final ArrayNode aggregates = o.putArray("aggregates");
    for (Aggregate a : b.aggregates()) {
      final ObjectNode j = aggregates.addObject();
      j.put("seq", u64(a.seq()));
      j.put("id", u64(a.id()));
      j.put("kind", a.kind());
      j.put("scope", a.scope());
      j.put("key", a.key());
      j.put("group_tag", a.groupTag());
      j.put("metric", a.metric());
      j.put("window_start_ms", a.windowStartMs());
      j.put("window_end_ms", a.windowEndMs());
      j.put("closed_at_ms", a.closedAtMs());
      j.put("count", u64(a.count()));
      j.put("sum", bits(a.sum()));
      j.put("min", bits(a.min()));
      j.put("max", bits(a.max()));
      j.put("mean", bits(a.mean()));
      j.put("stddev", bits(a.stddev()));
      j.put("first_time_ms", a.firstTimeMs());
      j.put("first", bits(a.first()));
      j.put("last_time_ms", a.lastTimeMs());
      j.put("last", bits(a.last()));
      j.put("rate", bits(a.rate()));
      j.put("has_quantiles", a.hasQuantiles());
      j.put("p50", bits(a.p50()));
      j.put("p90", bits(a.p90()));
      j.put("p99", bits(a.p99()));
    }
    return o;
  }

  /** The first difference's path, or null; numbers compare as decimal text whatever their JSON width. */
  static String firstDifference(JsonNode want, JsonNode got, String path) {
    if (want.isNumber() || got.isNumber()) {
      return want.isNumber() && got.isNumber() && want.asText().equals(got.asText()) ? null
          : path + ": expected " + want + ", got " + got;
    }
    if (want.getNodeType() != got.getNodeType()) return path + ": expected " + want + ", got " + got;
    if (want.isObject()) {
      for (Iterator<String> it = want.fieldNames(); it.hasNext(); ) {
        final String k = it.next();
        if (!got.has(k)) return path + "." + k + ": missing";
        final String d = firstDifference(want.get(k), got.get(k), path + "." + k);
        if (d != null) return d;
      }
      for (Iterator<String> it = got.fieldNames(); it.hasNext(); ) {
        final String k = it.next();
        if (!want.has(k)) return path + "." + k + ": not expected";
      }
      return null;
    }
    if (want.isArray()) {
      if (want.size() != got.size()) return path + ": " + want.size() + " entries expected, " + got.size() + " got";
      for (int i = 0; i < want.size(); ++i) {
        final String d = firstDifference(want.get(i), got.get(i), path + "[" + i + "]");
        if (d != null) return d;
      }
      return null;
    }
    return want.equals(got) ? null : path + ": expected " + want + ", got " + got;
  }

  @Test
  void anErrorNamesItsKind() throws Exception {
    final Vectors.Vector v = Vectors.load("bad_truncated_frame");
    final BatchFormatException e = org.junit.jupiter.api.Assertions.assertThrows(BatchFormatException.class,
        () -> BatchDecoder.decode(v.value(), Map.of()));
    assertEquals(BatchFormatException.Kind.BAD_COMPRESSION, e.kind());
    assertTrue(e.getMessage().startsWith("bad_compression: "));
  }

  @Test
  void everyTruncationOfAValidValueIsRefusedWhole() throws Exception {
    final byte[] value = Vectors.load("v2_telemetry_tags_boot").value();
    for (int n = 0; n < value.length; ++n) {
      final byte[] cut = java.util.Arrays.copyOf(value, n);
      org.junit.jupiter.api.Assertions.assertThrows(BatchFormatException.class, () -> BatchDecoder.decode(cut, Map.of()));
    }
  }
}
