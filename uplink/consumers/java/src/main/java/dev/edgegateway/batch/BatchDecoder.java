package dev.edgegateway.batch;

import com.github.luben.zstd.Zstd;
import com.github.luben.zstd.ZstdException;
import gw.uplink.fb.Column;
import gw.uplink.fb.Shape;
import gw.uplink.fb.Tag;
import gw.uplink.fb.TagSet;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.Comparator;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * Decodes one upstream batch: a message value (one zstd frame holding a Batch FlatBuffer) and its
 * headers, by the rules of the gateway's uplink/FORMAT.md, versions 1 (rows) and 2 (columnar),
 * telemetry and aggregate batches. The FlatBuffer accessors (package gw.uplink.fb) are generated from
 * uplink/batch.fbs by flatc at build time. Everything is read and checked before anything is
 * returned: a value that is not a whole batch throws {@link BatchFormatException}, never a partial
 * list. Thread-safe (static, no state).
 *
 * <p>The Java FlatBuffers runtime has no verifier: reads are bounds-checked by ByteBuffer, and the
 * decoder checks required fields, counts, ranges and UTF-8, which refuses every malformed shared
 * vector; a forged buffer whose offsets point back into itself can still decode where the C++
 * reader's verifier refuses it.
 */
public final class BatchDecoder {
  /** A frame declaring more decompressed bytes than this is refused (TOO_LARGE). */
  public static final long MAX_BATCH_BYTES = 64L << 20;

  private static final double[] POW10 = new double[16];
  private static final String[] KINDS = {null, "tumbling", "hopping", "session"};
  private static final String[] SCOPES = {null, "device", "group"};

  static {
    for (int k = 0; k < POW10.length; ++k) POW10[k] = Math.pow(10, k);  // exact for 0..15
  }

  private BatchDecoder() {}

  /** Decodes a value and checks it against {@code headers} (may be empty: nothing to check). */
  public static Batch decode(byte[] value, Map<String, String> headers) {
    final byte[] raw = decompress(value);
    final Batch batch = decodeFlatBuffer(raw, headers);
    checkHeaders(batch, headers);
    return batch;
  }

  /**
   * gw-codec must be zstd and gw-dict-id 0 (UNSUPPORTED_CODEC); gw-gateway-id, gw-first-seq,
   * gw-last-seq, gw-schema-version and gw-record-type, where present, equal the batch's
   * (HEADER_MISMATCH).
   */
  public static void checkHeaders(Batch batch, Map<String, String> headers) {
    final String codec = headers.get("gw-codec");
    if (codec != null && !codec.equals("zstd")) {
      throw new BatchFormatException(BatchFormatException.Kind.UNSUPPORTED_CODEC, "gw-codec " + codec);
    }
    final String dict = headers.get("gw-dict-id");
    if (dict != null && !dict.equals("0")) {
      throw new BatchFormatException(BatchFormatException.Kind.UNSUPPORTED_CODEC, "gw-dict-id " + dict);
    }
    final Map<String, String> expected = new LinkedHashMap<>();
    expected.put("gw-gateway-id", batch.gatewayId());
    expected.put("gw-first-seq", Long.toUnsignedString(batch.firstSeq()));
    expected.put("gw-last-seq", Long.toUnsignedString(batch.lastSeq()));
    expected.put("gw-schema-version", Integer.toString(batch.formatVersion()));
    expected.put("gw-record-type", batch.recordType());
    for (Map.Entry<String, String> e : expected.entrySet()) {
      final String got = headers.get(e.getKey());
      if (got != null && !got.equals(e.getValue())) {
        throw new BatchFormatException(BatchFormatException.Kind.HEADER_MISMATCH,
            "header " + e.getKey() + " is '" + got + "', the batch says '" + e.getValue() + "'");
      }
    }
  }

  private static byte[] decompress(byte[] value) {
    if (ZstdFrames.frameSize(value) != value.length) throw bad("not exactly one zstd frame");
    final long size = Zstd.getFrameContentSize(value);
    if (size == -2) throw bad("not a zstd frame");
    if (size < 0) throw bad("the frame does not declare its content size");
    if (size > MAX_BATCH_BYTES) {
      throw new BatchFormatException(BatchFormatException.Kind.TOO_LARGE, "the frame declares " + size + " bytes");
    }
    try {
      final byte[] raw = Zstd.decompress(value, (int) size);
      if (raw.length != size) throw bad("the content is not the size the frame declares");
      return raw;
    } catch (ZstdException e) {
      throw bad("the frame does not decompress (" + e.getMessage() + ")");
    }
  }

  private static BatchFormatException bad(String detail) {
    return new BatchFormatException(BatchFormatException.Kind.BAD_COMPRESSION, detail);
  }

  private static BatchFormatException malformed(String detail) {
    return new BatchFormatException(BatchFormatException.Kind.MALFORMED, detail);
  }

  private static Batch decodeFlatBuffer(byte[] raw, Map<String, String> headers) {
    final ByteBuffer bb = ByteBuffer.wrap(raw);
    if (raw.length < 8 || !gw.uplink.fb.Batch.BatchBufferHasIdentifier(bb)) {
      throw malformed("not a Batch FlatBuffer (identifier GWB1)");
    }
    try {
      final gw.uplink.fb.Batch b = gw.uplink.fb.Batch.getRootAsBatch(bb);
      final int version = b.formatVersion();
      final String gatewayId = b.gatewayId();
      if (gatewayId == null) throw malformed("gateway_id is absent");
      if (version < 1 || version > 2) {
        throw new BatchFormatException(BatchFormatException.Kind.UNSUPPORTED_VERSION, "format_version " + version);
      }
      final long first = b.firstSeq(), last = b.lastSeq();
      if (Long.compareUnsigned(first, last) > 0) throw malformed("first_seq > last_seq");
      final int type = b.recordType();
      if (type != 1 && type != 2) {
        throw new BatchFormatException(BatchFormatException.Kind.UNSUPPORTED_VERSION, "record type " + type);
      }
      List<TelemetryRecord> records = List.of();
      List<Aggregate> aggregates = List.of();
      if (type == 2) {
        aggregates = aggregates(b, first, last);
      } else if (version == 1) {
        records = rows(b, first, last);
      } else {
        records = columnar(b, first, last);
      }
      return new Batch(gatewayId, first, last, version, type == 2 ? "aggregate" : "telemetry", records, aggregates,
          Collections.unmodifiableMap(new LinkedHashMap<>(headers)));
    } catch (BatchFormatException e) {
      throw e;
    } catch (RuntimeException e) {  // out-of-bounds offsets, invalid UTF-8 (IllegalArgumentException)
      throw malformed("unreadable batch (" + e + ")");
    }
  }

  private static String required(String s, String what) {
    if (s == null) throw malformed(what + " is absent");
    return s;
  }

  private static boolean inRange(long seq, long first, long last) {
    return Long.compareUnsigned(seq, first) >= 0 && Long.compareUnsigned(seq, last) <= 0;
  }

  /** Entries of a rows or aggregate batch: strictly increasing seqs, each within first..last. */
  private static void checkNextSeq(long seq, Long previous, long first, long last, String what) {
    if ((previous != null && Long.compareUnsigned(seq, previous) <= 0) || !inRange(seq, first, last)) {
      throw malformed(what + " seq out of order or outside the range");
    }
  }

  private static List<TelemetryRecord> rows(gw.uplink.fb.Batch b, long first, long last) {
    final int n = b.recordsLength();
    final List<TelemetryRecord> out = new ArrayList<>(n);
    for (int i = 0; i < n; ++i) {
      final gw.uplink.fb.Record r = b.records(i);
      final long seq = r.seq();
      checkNextSeq(seq, out.isEmpty() ? null : out.get(out.size() - 1).seq(), first, last, "record");
      final Map<String, Double> metrics = new LinkedHashMap<>();
      for (int k = 0; k < r.metricsLength(); ++k) {
        final gw.uplink.fb.Metric m = r.metrics(k);
        if (metrics.put(required(m.name(), "a metric name"), m.value()) != null) {
          throw malformed("a record has a metric name twice");
        }
      }
      out.add(new TelemetryRecord(seq, required(r.deviceId(), "a device id"), r.deviceSeq(), r.timeMs(), 0,
          Map.of(), Collections.unmodifiableMap(metrics)));
    }
    return Collections.unmodifiableList(out);
  }

  private static List<TelemetryRecord> columnar(gw.uplink.fb.Batch b, long first, long last) {
    final int runs = b.devicesLength();
    if (b.runLengthsLength() != runs) throw malformed("devices and run_lengths differ in length");
    long total = 0;
    for (int r = 0; r < runs; ++r) total += b.runLengths(r);
    final long n = total;
    if (b.seqDeltasLength() != n || b.deviceSeqDeltasLength() != n || b.timeDeltasLength() != n
        || b.shapeIdsLength() != n) {
      throw malformed("the per-record vectors do not hold " + n + " entries");
    }
    final boolean hasTags = b.tagSetIdsVector() != null, hasBoot = b.bootIdsVector() != null;
    if ((hasTags && b.tagSetIdsLength() != n) || (hasBoot && b.bootIdsLength() != n)) {
      throw malformed("tag_set_ids or boot_ids do not hold " + n + " entries");
    }
    final int names = b.metricNamesLength();
    final String[] name = new String[names];
    for (int i = 0; i < names; ++i) name[i] = required(b.metricNames(i), "a metric name");
    final int[][] shapes = new int[b.shapesLength()][];
    for (int s = 0; s < shapes.length; ++s) {
      final Shape shape = b.shapes(s);
      shapes[s] = new int[shape.metricsLength()];
      final Set<Long> seen = new HashSet<>();
      for (int k = 0; k < shapes[s].length; ++k) {
        final long m = shape.metrics(k);
        if (m >= names) throw malformed("a shape names a metric beyond metric_names");
        if (!seen.add(m)) throw malformed("a record has a metric name twice");
        shapes[s][k] = (int) m;
      }
    }
    List<Map<String, String>> tagSets = List.of();
    if (hasTags) {
      tagSets = new ArrayList<>();
      for (int t = 0; t < b.tagSetsLength(); ++t) {
        final TagSet set = b.tagSets(t);
        final Map<String, String> tags = new LinkedHashMap<>();
        for (int g = 0; g < set.tagsLength(); ++g) {
          final Tag tag = set.tags(g);
          if (tags.put(required(tag.key(), "a tag key"), required(tag.value(), "a tag value")) != null) {
            throw malformed("a record has a tag key twice");
          }
        }
        tagSets.add(Collections.unmodifiableMap(tags));
      }
    }
    final Column[] column = new Column[names];
    for (int c = 0; c < b.columnsLength(); ++c) {
      final Column col = b.columns(c);
      final long m = col.metric();
      if (m >= names || column[(int) m] != null) throw malformed("a column for an unknown or repeated metric");
      final int enc = col.encoding();
      if (enc == 1 ? col.scale() >= POW10.length : enc != 0) throw malformed("column encoding or scale");
      column[(int) m] = col;
    }
    final int[] next = new int[names];
    final long[] prev = new long[names];
    final int[] lastRun = new int[names];
    Arrays.fill(lastRun, -1);
    final List<TelemetryRecord> out = new ArrayList<>((int) n);
    int i = 0;
    for (int r = 0; r < runs; ++r) {
      final String device = required(b.devices(r), "a device id");
      long seq = 0, dseq = 0, time = 0, delta = 0;
      final long len = b.runLengths(r);
      for (long k = 0; k < len; ++k, ++i) {
        final long sd = b.seqDeltas(i);
        if (k > 0 && sd == 0) throw malformed("seqs do not increase within a run");
        seq = k == 0 ? first + sd : seq + sd;
        if (!inRange(seq, first, last) || (k > 0 && Long.compareUnsigned(seq, sd) < 0)) {
          throw malformed("a seq outside first_seq..last_seq");
        }
        final long dd = b.deviceSeqDeltas(i);
        dseq = k == 0 ? dd : dseq + dd;
        final long td = b.timeDeltas(i);
        if (k == 0) {
          time = td;
        } else {
          delta = k == 1 ? td : delta + td;
          time += delta;
        }
        final long shapeId = b.shapeIds(i);
        if (shapeId >= shapes.length) throw malformed("a shape id beyond the shapes");
        Map<String, String> tags = Map.of();
        if (hasTags) {
          final long t = b.tagSetIds(i);
          if (t >= tagSets.size()) throw malformed("a tag set id beyond tag_sets");
          tags = tagSets.get((int) t);
        }
        final Map<String, Double> metrics = new LinkedHashMap<>();
        for (int m : shapes[(int) shapeId]) {
          final Column col = column[m];
          if (col == null) throw malformed("metric " + name[m] + " has no column");
          final boolean firstOfRun = lastRun[m] != r;
          lastRun[m] = r;
          final int idx = next[m]++;
          final double value;
          if (col.encoding() == 0) {
            if (idx >= col.bitsLength()) throw malformed("column " + name[m] + " has too few values");
            final long bits = firstOfRun ? col.bits(idx) : col.bits(idx) ^ prev[m];
            prev[m] = bits;
            value = Double.longBitsToDouble(bits);
          } else {
            if (idx >= col.deltasLength()) throw malformed("column " + name[m] + " has too few values");
            final long v = firstOfRun ? col.deltas(idx) : prev[m] + col.deltas(idx);  // wraps as FORMAT.md says
            prev[m] = v;
            value = (double) v / POW10[col.scale()];
          }
          metrics.put(name[m], value);
        }
        out.add(new TelemetryRecord(seq, device, dseq, time, hasBoot ? b.bootIds(i) : 0, tags,
            Collections.unmodifiableMap(metrics)));
      }
    }
    for (int m = 0; m < names; ++m) {
      if (column[m] != null && next[m] != column[m].bitsLength() + column[m].deltasLength()) {
        throw malformed("column " + name[m] + " has values left over");
      }
    }
    out.sort(Comparator.comparing(TelemetryRecord::seq, Long::compareUnsigned));
    for (int k = 1; k < out.size(); ++k) {
      if (out.get(k).seq() == out.get(k - 1).seq()) throw malformed("a seq twice");
    }
    return Collections.unmodifiableList(out);
  }

  private static List<Aggregate> aggregates(gw.uplink.fb.Batch b, long first, long last) {
    final int n = b.aggregatesLength();
    final List<Aggregate> out = new ArrayList<>(n);
    for (int i = 0; i < n; ++i) {
      final gw.uplink.fb.Aggregate a = b.aggregates(i);
      final long seq = a.seq();
      checkNextSeq(seq, out.isEmpty() ? null : out.get(out.size() - 1).seq(), first, last, "aggregate");
      final int kind = a.kind(), scope = a.scope();
      if (kind < 1 || kind > 3 || scope < 1 || scope > 2) throw malformed("window kind or scope");
      final String groupTag = a.groupTag();
      out.add(new Aggregate(seq, a.id(), KINDS[kind], SCOPES[scope], required(a.key(), "an aggregate key"),
          groupTag == null ? "" : groupTag, required(a.metric(), "an aggregate metric"), a.windowStartMs(),
          a.windowEndMs(), a.closedAtMs(), a.count(), a.sum(), a.min(), a.max(), a.mean(), a.stddev(),
          a.firstTimeMs(), a.first(), a.lastTimeMs(), a.last(), a.rate(), a.hasQuantiles(), a.p50(), a.p90(),
          a.p99()));
    }
    return Collections.unmodifiableList(out);
  }
}
