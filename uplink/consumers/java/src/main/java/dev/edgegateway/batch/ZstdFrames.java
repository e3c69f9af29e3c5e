package dev.edgegateway.batch;

/**
 * The compressed size of the zstd frame at the start of a buffer, read from the frame's own headers
 * (RFC 8878, 3.1.1: frame header, then blocks of 3-byte headers, then an optional checksum), so that
 * a value holding anything after its one frame (another frame, a skippable frame, garbage) is
 * refused as the C++ reader refuses it with ZSTD_findFrameCompressedSize, which zstd-jni does not
 * expose. Returns -1 when the bytes are not one complete zstd frame. Thread-safe (pure).
 */
final class ZstdFrames {
  private static final int MAGIC = 0xFD2FB528;

  private ZstdFrames() {}

  static long frameSize(byte[] b) {
    if (b.length < 6 || le32(b, 0) != MAGIC) return -1;
    final int fhd = b[4] & 0xFF;
    final int fcsFlag = fhd >>> 6;
    final boolean singleSegment = (fhd & 0x20) != 0;
    final boolean checksum = (fhd & 0x04) != 0;
    final int dictFlag = fhd & 0x03;
    if ((fhd & 0x08) != 0) return -1;  // reserved bit
    long pos = 5;
    if (!singleSegment) pos += 1;  // window descriptor
    pos += new int[] {0, 1, 2, 4}[dictFlag];
    pos += fcsFlag == 0 ? (singleSegment ? 1 : 0) : new int[] {0, 2, 4, 8}[fcsFlag];
    while (true) {
      if (pos + 3 > b.length) return -1;
      final int header = (b[(int) pos] & 0xFF) | (b[(int) pos + 1] & 0xFF) << 8 | (b[(int) pos + 2] & 0xFF) << 16;
      pos += 3;
      final boolean last = (header & 1) != 0;
      final int type = (header >>> 1) & 3;
      final int size = header >>> 3;
      if (type == 3) return -1;  // reserved block type
      pos += type == 1 ? 1 : size;  // an RLE block holds one byte
      if (pos > b.length) return -1;
      if (last) break;
    }
    if (checksum) pos += 4;
    return pos <= b.length ? pos : -1;
  }

  private static int le32(byte[] b, int at) {
    return (b[at] & 0xFF) | (b[at + 1] & 0xFF) << 8 | (b[at + 2] & 0xFF) << 16 | (b[at + 3] & 0xFF) << 24;
  }
}
