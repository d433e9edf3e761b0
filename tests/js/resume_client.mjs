// The real AnyCable client (@anycable/core, extended protocol) subscribed to our RoomChannel,
// reporting what happens as one JSON object per line on stdout, for
// tests/test_anycable_client.py. Node 20 has no global WebSocket: `ws` provides it.
//
//   node resume_client.mjs <ws url of /cable> <pubsub_token>
//
// Lines: {"type":"connect","reconnect":…,"restored":…}, {"type":"disconnect","reason":…},
// {"type":"subscribed"}, {"type":"message","event":…,"id":…,"content":…,"meta":{stream,epoch,
// offset}}, {"type":"info","event":"history_received"|"history_not_found"}. The client is
// used as an application would use it; only the reconnect delay is short, to keep the test
// quick. It exits when stdin closes.

import { createCable } from '@anycable/core'
import WebSocket from 'ws'

const [url, pubsubToken] = process.argv.slice(2)
const out = obj => process.stdout.write(JSON.stringify(obj) + '\n')

const cable = createCable(url, {
  protocol: 'actioncable-v1-ext-json',
  websocketImplementation: WebSocket,
  logLevel: 'error',
  reconnectStrategy: () => 100
})

cable.on('connect', ev =>
  out({ type: 'connect', reconnect: ev.reconnect, restored: ev.restored })
)
cable.on('disconnect', ev => out({ type: 'disconnect', reason: ev && ev.reason }))
cable.on('close', ev => out({ type: 'close', reason: ev && ev.reason }))

const channel = cable.subscribeTo('RoomChannel', { pubsub_token: pubsubToken })
channel.on('message', (msg, meta) =>
  out({
    type: 'message',
    event: msg.event,
    id: msg.data && msg.data.id,
    content: msg.data && msg.data.content,
    meta: meta || null
  })
)
channel.on('info', info => out({ type: 'info', event: info.type }))

await cable.connect()
await channel.ensureSubscribed()
out({ type: 'subscribed' })

process.stdin.resume()
process.stdin.on('end', () => {
  cable.disconnect()
  process.exit(0)
})
