package dev.edgegateway.batch.example;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.edgegateway.batch.Aggregate;
import dev.edgegateway.batch.Batch;
import dev.edgegateway.batch.BatchDeserializer;
import dev.edgegateway.batch.TelemetryRecord;
import java.math.BigInteger;
import java.time.Duration;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.RecordDeserializationException;
import org.apache.kafka.common.serialization.StringDeserializer;

/**
 * A small consumer: every partition of a topic from the beginning through {@link
 * BatchDeserializer}, one JSON line per record (gateway, seq, device, device_seq, boot_id, time_ms,
 * tags, metrics; aggregates with "type": "aggregate"), as {@code python -m gwbatch} prints them.
 *
 * <pre>java -cp ... dev.edgegateway.batch.example.ConsumerExample --bootstrap HOST:PORT --topic T
 *     [--dedup] [--idle-exit-ms N] [--max-records N]</pre>
 *
 * A message that is not a whole batch is reported on stderr and skipped. Non-finite values print as
 * null. Single-threaded.
 */
public final class ConsumerExample {
  private static final ObjectMapper JSON = new ObjectMapper();

  private ConsumerExample() {}

  public static void main(String[] args) throws Exception {
    String bootstrap = null, topic = null;
    boolean dedup = false;
    long idleExitMs = 0, maxRecords = 0;
    for (int i = 0; i < args.length; ++i) {
      switch (args[i]) {
        case "--bootstrap" -> bootstrap = args[++i];
        case "--topic" -> topic = args[++i];
        case "--dedup" -> dedup = true;
        case "--idle-exit-ms" -> idleExitMs = Long.parseLong(args[++i]);
        case "--max-records" -> maxRecords = Long.parseLong(args[++i]);
        default -> {
          System.err.println("usage: ConsumerExample --bootstrap HOST:PORT --topic T [--dedup] [--idle-exit-ms N]"
              + " [--max-records N]");
          System.exit(2);
        }
      }
    }
    if (bootstrap == null || topic == null) {
      System.err.println("ConsumerExample: --bootstrap and --topic are required");
      System.exit(2);
    }
    final Properties p = new Properties();
    p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
    p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
    p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, BatchDeserializer.class.getName());
    final Map<String, Set<Long>> seen = new HashMap<>();
    long printed = 0, removed = 0, skipped = 0;
    try (KafkaConsumer<String, Batch> consumer = new KafkaConsumer<>(p)) {
      final List<TopicPartition> parts = consumer.partitionsFor(topic, Duration.ofSeconds(30)).stream()
          .map(i -> new TopicPartition(i.topic(), i.partition())).toList();
      consumer.assign(parts);
      consumer.seekToBeginning(parts);
      long lastMessage = System.nanoTime();
      boolean received = false;
      outer:
      while (maxRecords == 0 || printed < maxRecords) {
        final Iterable<ConsumerRecord<String, Batch>> polled;
        try {
          polled = consumer.poll(Duration.ofMillis(200));
        } catch (RecordDeserializationException e) {
          System.err.println("ConsumerExample: skipped " + e.topicPartition() + "@" + e.offset() + ": "
              + e.getCause().getMessage());
          consumer.seek(e.topicPartition(), e.offset() + 1);
          ++skipped;
          continue;
        }
        boolean any = false;
        for (ConsumerRecord<String, Batch> m : polled) {
          any = true;
          final Batch b = m.value();
          if (b == null) continue;
          final Set<Long> ids = seen.computeIfAbsent(b.gatewayId(), k -> new HashSet<>());
          for (TelemetryRecord r : b.records()) {
            if (dedup && !ids.add(r.seq())) {
              ++removed;
              continue;
            }
            System.out.println(JSON.writeValueAsString(line(b, r)));
            if (++printed == maxRecords) break outer;
          }
          for (Aggregate a : b.aggregates()) {
            if (dedup && !ids.add(a.seq())) {
              ++removed;
              continue;
            }
            System.out.println(JSON.writeValueAsString(line(b, a)));
            if (++printed == maxRecords) break outer;
          }
        }
        System.out.flush();
        if (any) {
          lastMessage = System.nanoTime();
          received = true;
        } else if (idleExitMs > 0
            && (System.nanoTime() - lastMessage) / 1_000_000 >= (received ? idleExitMs : Math.max(idleExitMs, 30_000))) {
          break;  // before the first message at least 30 s: joining and fetching take a while on a busy machine
        }
      }
    }
    System.err.println("ConsumerExample: " + printed + " records printed, " + skipped + " messages skipped"
        + (dedup ? ", " + removed + " copies removed" : ""));
  }

  static BigInteger unsigned(long v) {
    return new BigInteger(Long.toUnsignedString(v));
  }

  static Double finite(double v) {
    return Double.isFinite(v) ? v : null;
  }

  static ObjectNode line(Batch b, TelemetryRecord r) {
    final ObjectNode o = JSON.createObjectNode();
    o.put("gateway", b.gatewayId());
    o.put("seq", unsigned(r.seq()));
    o.put("device", r.device());
    o.put("device_seq", unsigned(r.deviceSeq()));
    o.put("boot_id", r.bootId());
    o.put("time_ms", r.timeMs());
    final ObjectNode tags = o.putObject("tags");
    r.tags().forEach(tags::put);
    final ObjectNode metrics = o.putObject("metrics");
    r.metrics().forEach((k, v) -> metrics.put(k, finite(v)));
    return o;
  }

  static ObjectNode line(Batch b, Aggregate a) {
    final ObjectNode o = JSON.createObjectNode();
    o.put("gateway", b.gatewayId());
    o.put("type", "aggregate");
    o.put("seq", unsigned(a.seq()));
    o.put("id", unsigned(a.id()));
    o.put("kind", a.kind());
    o.put("scope", a.scope());
    o.put("key", a.key());
    o.put("group_tag", a.groupTag());
    o.put("metric", a.metric());
    o.put("window_start_ms", a.windowStartMs());
    o.put("window_end_ms", a.windowEndMs());
    o.put("closed_at_ms", a.closedAtMs());
    o.put("count", unsigned(a.count()));
    o.put("sum", finite(a.sum()));
    o.put("min", finite(a.min()));
    o.put("max", finite(a.max()));
    o.put("mean", finite(a.mean()));
    o.put("stddev", finite(a.stddev()));
    o.put("first_time_ms", a.firstTimeMs());
    o.put("first", finite(a.first()));
    o.put("last_time_ms", a.lastTimeMs());
    o.put("last", finite(a.last()));
    o.put("rate", finite(a.rate()));
    o.put("has_quantiles", a.hasQuantiles());
    o.put("p50", finite(a.p50()));
    o.put("p90", finite(a.p90()));
    o.put("p99", finite(a.p99()));
    return o;
  }
}
