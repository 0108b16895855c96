/** The cluster id sent as 32-bit halves (u64Bits) encodes to the same bytes as its decimal string. */
import t from 'tap';
import { raftSendMethod, u64Bits } from '../../src/rpc/raft-proto.ts';

void t.test('u64Bits encodes as the decimal string does, and decodes to it', (t) => {
  const values = [
    0n,
    1n,
    42n,
    0x7fffffffn,
    0x80000000n,
    0xffffffffn,
    1n << 32n,
    1n << 63n,
    12345678901234567890n,
    (1n << 64n) - 1n,
  ];
  for (const v of values) {
    const messages = [new Uint8Array([1, 2, 3])];
    const asString = raftSendMethod.requestSerialize({ from: 7, clusterId: v.toString(), messages });
    const asBits = raftSendMethod.requestSerialize({ from: 7, clusterId: u64Bits(v), messages });
    t.same([...asBits], [...asString], `${v}: same bytes`);
    t.equal(
      (raftSendMethod.requestDeserialize(asBits) as { clusterId: string }).clusterId,
      v.toString(),
      `${v}: decodes`,
    );
  }
  t.end();
});
