package dev.edgegateway.batch;

/** A message value (or its headers) that is not a whole, valid batch; nothing of it is returned. */
public final class BatchFormatException extends RuntimeException {
  private static final long serialVersionUID = 1L;

  /** The same words as the C++ and Python readers use. */
  public enum Kind {
    /** not exactly one zstd frame with its content size, or it does not decompress */
    BAD_COMPRESSION,
    /** the frame declares more than {@link BatchDecoder#MAX_BATCH_BYTES} */
    TOO_LARGE,
    /** not a valid Batch FlatBuffer, or its contents are inconsistent */
    MALFORMED,
    /** format_version or record type newer than this reader */
    UNSUPPORTED_VERSION,
    /** a header disagrees with the batch it carries */
    HEADER_MISMATCH,
    /** gw-codec is not zstd, or gw-dict-id names a dictionary */
    UNSUPPORTED_CODEC;

    /** The lower-case name the shared test vectors use (e.g. "bad_compression"). */
    public String wireName() {
      return name().toLowerCase(java.util.Locale.ROOT);
    }
  }

  private final Kind kind;

  public BatchFormatException(Kind kind, String detail) {
    super(kind.wireName() + ": " + detail);
    this.kind = kind;
  }

  public Kind kind() {
    return kind;
  }
}
