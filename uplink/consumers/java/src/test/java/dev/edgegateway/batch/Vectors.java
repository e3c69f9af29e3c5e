package dev.edgegateway.batch;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/** The shared vectors (uplink/consumers/README.md) in the folder the system property gw.batch.vectors names. */
final class Vectors {
  static final ObjectMapper JSON = new ObjectMapper();

  record Vector(String name, JsonNode spec, byte[] value, Map<String, String> headers) {}

  private Vectors() {}

  static Path dir() {
    final String d = System.getProperty("gw.batch.vectors");
    if (d == null || !Files.isDirectory(Path.of(d))) {
      throw new IllegalStateException("gw.batch.vectors must name a folder written by `batch-vectors write DIR`: " + d);
    }
    return Path.of(d);
  }

  static List<Vector> all() throws IOException {
    final List<Vector> out = new ArrayList<>();
    for (JsonNode name : JSON.readTree(dir().resolve("index.json").toFile())) {
      out.add(load(name.asText()));
    }
    return out;
  }

  static Vector load(String name) throws IOException {
    final JsonNode spec = JSON.readTree(dir().resolve(name + ".json").toFile());
    final Map<String, String> headers = new LinkedHashMap<>();
    for (JsonNode h : spec.get("headers")) headers.put(h.get(0).asText(), h.get(1).asText());
    return new Vector(name, spec, Files.readAllBytes(dir().resolve(spec.get("value").asText())), headers);
  }
}
