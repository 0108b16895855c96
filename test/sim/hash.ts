/**
 * A fast non-cryptographic 64-bit-ish hash (two 32-bit lanes, cyrb53-style mixing), incremental, for trace
 * hashes and entry-content fingerprints. Collisions only weaken a check; they never fail a correct run.
 */
const float64Scratch = new Float64Array(1);
const float64Words = new Int32Array(float64Scratch.buffer);

export class Hasher {
  private h1 = 0xdeadbeef;
  private h2 = 0x41c6ce57;

  number(value: number): this {
    // Integers take the fast path; anything else hashes its exact float64 bits, so 1.5 and 1 differ.
    if (Number.isInteger(value) && Math.abs(value) < 0x8000_0000) return this.word(value | 0);
    float64Scratch[0] = value;
    return this.word(float64Words[0] as number).word(float64Words[1] as number);
  }

  string(text: string): this {
    this.word(text.length);
    for (let i = 0; i < text.length; i++) this.word(text.charCodeAt(i));
    return this;
  }

  bytes(data: Uint8Array): this {
    this.word(data.length);
    for (let i = 0; i < data.length; i++) this.word(data[i] as number);
    return this;
  }

  word(value: number): this {
    this.h1 = Math.imul(this.h1 ^ value, 2654435761);
    this.h2 = Math.imul(this.h2 ^ value, 1597334677);
    return this;
  }

  /** The hash as 16 hex digits. Does not reset: more input may follow. */
  hex(): string {
    const [a, b] = this.finish();
    return a.toString(16).padStart(8, '0') + b.toString(16).padStart(8, '0');
  }

  /** The hash folded to a safe integer (53 bits), for use as a map key. */
  value(): number {
    const [a, b] = this.finish();
    return (a & 0x1f_ffff) * 0x1_0000_0000 + b;
  }

  private finish(): [number, number] {
    let h1 = this.h1;
    let h2 = this.h2;
    h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507);
    h1 ^= Math.imul(h2 ^ (h2 >>> 13), 3266489909);
    h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507);
    h2 ^= Math.imul(h1 ^ (h1 >>> 13), 3266489909);
    return [h1 >>> 0, h2 >>> 0];
  }
}

/** Fingerprint of a byte string (entry data). */
export function hashBytes(data: Uint8Array): number {
  return new Hasher().bytes(data).value();
}
