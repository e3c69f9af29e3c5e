package dev.edgegateway.batch.example;

import dev.edgegateway.batch.Batch;
import dev.edgegateway.batch.BatchDecoder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * Decode rate of the Java reader over the valid shared vectors (those with an "expect"), after a
 * warm-up of the same length: {@code DecodeBench VECTORS_DIR [SECONDS]} prints {@code BENCH
 * decode_java N records/s}. Single-threaded.
 */
public final class DecodeBench {
  private DecodeBench() {}

  public static void main(String[] args) throws Exception {
    final Path dir = Path.of(args[0]);
    final double seconds = args.length > 1 ? Double.parseDouble(args[1]) : 3.0;
    final List<byte[]> values = new ArrayList<>();
    for (String name : Files.readAllLines(dir.resolve("index.json"))) {
      name = name.replaceAll("[\\[\\]\", ]", "");
      if (name.isEmpty() || !Files.readString(dir.resolve(name + ".json")).contains("\"expect\"")) continue;
      values.add(Files.readAllBytes(dir.resolve(name + ".zst")));
    }
    run(values, seconds);  // warm-up: the JIT compiles the decoder
    final double rate = run(values, seconds);
    System.out.printf("BENCH decode_java %.0f records/s%n", rate);
  }

  private static double run(List<byte[]> values, double seconds) {
    long records = 0;
    final long start = System.nanoTime();
    double elapsed = 0;
    while (elapsed < seconds) {
      for (byte[] v : values) {
        final Batch b = BatchDecoder.decode(v, Map.of());
        records += b.records().size() + b.aggregates().size();
      }
      elapsed = (System.nanoTime() - start) / 1e9;
    }
    return records / elapsed;
  }
}
