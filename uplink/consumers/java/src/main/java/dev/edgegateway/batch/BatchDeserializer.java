package dev.edgegateway.batch;

import java.nio.charset.StandardCharsets;
import java.util.LinkedHashMap;
import java.util.Map;
import org.apache.kafka.common.errors.SerializationException;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.Headers;
import org.apache.kafka.common.serialization.Deserializer;

/**
 * A Kafka {@code Deserializer<Batch>} for the gateway's topics: {@code
 * value.deserializer=dev.edgegateway.batch.BatchDeserializer}. The message's headers are checked
 * against the batch. A value that is not a whole batch throws SerializationException (its cause a
 * {@link BatchFormatException}); the consumer then reports a RecordDeserializationException at that
 * offset, which an application skips by seeking past it. A null value (tombstone) gives null.
 */
public class BatchDeserializer implements Deserializer<Batch> {
  @Override
  public Batch deserialize(String topic, byte[] data) {
    return deserialize(topic, null, data);
  }

  @Override
  public Batch deserialize(String topic, Headers headers, byte[] data) {
    if (data == null) return null;
    try {
      return BatchDecoder.decode(data, headerMap(headers));
    } catch (BatchFormatException e) {
      throw new SerializationException("topic " + topic + ": not a gateway batch: " + e.getMessage(), e);
    }
  }

  /** Header name to value (UTF-8); of a repeated name, the last. */
  static Map<String, String> headerMap(Headers headers) {
    final Map<String, String> out = new LinkedHashMap<>();
    if (headers == null) return out;
    for (Header h : headers) {
      if (h.value() != null) out.put(h.key(), new String(h.value(), StandardCharsets.UTF_8));
    }
    return out;
  }
}
