/** The setup message's optional `compression`: carried when lz4, absent otherwise, anything else refused. */
import { Packr } from 'msgpackr';
import t from 'tap';
import { DataPlaneError } from '../../src/chunkserver/dataplane/errors.ts';
import type { SetupMessage } from '../../src/chunkserver/dataplane/protocol.ts';
import { decodeMessage, encodeFields } from '../../src/chunkserver/dataplane/protocol.ts';

const setup: SetupMessage = { type: 'setup', handle: 5, version: 2, targetId: 1, mode: 'create', fromVersion: 0, offset: 0, chain: [{ id: 2, address: 'h:1' }] };

void t.test('setup round-trips with and without compression', (t) => {
  t.same(decodeMessage(encodeFields(setup), new Uint8Array(0)), setup);
  t.notOk('compression' in decodeMessage(encodeFields(setup), new Uint8Array(0)), 'absent stays absent');
  const lz4: SetupMessage = { ...setup, compression: 'lz4' };
  t.same(decodeMessage(encodeFields(lz4), new Uint8Array(0)), lz4);
  t.end();
});

void t.test('an unknown compression is a malformed frame', (t) => {
  const packr = new Packr({ useRecords: false, moreTypes: false, mapsAsObjects: true });
  for (const compression of ['zstd', 'none', 1, null]) {
    try {
      decodeMessage(packr.pack({ ...setup, compression }), new Uint8Array(0));
      t.fail(`${String(compression)}: accepted`);
    } catch (error) {
      t.ok(error instanceof DataPlaneError && error.code === 'MALFORMED_FRAME', `${String(compression)}: MALFORMED_FRAME`);
    }
  }
  t.end();
});
