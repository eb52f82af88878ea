// Node.js HTTPS and HTTP/2-over-TLS peers for test_tls_embedded.py: /usr/bin/node carries
// OpenSSL inside its executable and drives it through memory BIOs.
//
//   node node_tls_peer.js server https|h2 ADDR PORT CERT KEY LOG [NOTE_PORT]
//     Answers GET /status/CODE with CODE and any other path with 200 and a 10-byte body;
//     appends one JSON line per answered request to LOG ({"host", "status", "method", "conn": the
//     client's port}), then
//     prints "listening" once it listens. With NOTE_PORT: it also listens on ADDR:NOTE_PORT,
//     connects to itself there, and writes "secure\n" on that plain TCP connection from each
//     'secureConnection' handler: JavaScript that OpenSSL's handshake callback runs inside
//     SSL_read, writing to another socket.
//   node node_tls_peer.js client https|h2|https-parallel|https-pause ADDR PORT PATH...
//     One keep-alive connection (HTTP/1.1 agent with one socket, or one HTTP/2 session), the
//     requests one after the other; https-parallel: every request at once through an agent of
//     at most 4 keep-alive sockets, so that 4 connections' handshakes and requests interleave on
//     the one thread; https-pause: like https, but after the first half of the requests it
//     prints "paused" and waits for a line on stdin before the rest (same connection). Prints
//     "GET STATUS" per response: the client's own record.
'use strict';
const fs = require('fs');
const https = require('https');
const http2 = require('http2');

const [mode, proto, addr, port, ...rest] = process.argv.slice(2);

function statusOf(path) {
  const m = /^\/status\/(\d{3})$/.exec(path);
  return m ? Number(m[1]) : 200;
}

function serve() {
  const [cert, key, logPath] = rest;
  const log = fs.openSync(logPath, 'a');
  const handler = (req, res) => {
    const status = statusOf(req.url);
    const host = proto === 'h2' ? req.headers[':authority'] : req.headers.host;
    req.resume();
    req.on('end', () => {
      res.writeHead(status, {'content-type': 'text/plain'});
      res.end(status === 204 ? undefined : 'x'.repeat(10));
      const line = {host, status: String(status), method: req.method, conn: req.socket.remotePort};
      fs.writeSync(log, JSON.stringify(line) + '\n');
    });
  };
  const opts = {cert: fs.readFileSync(cert), key: fs.readFileSync(key)};
  const server = proto === 'h2' ? http2.createSecureServer(opts, handler)
                                : https.createServer(Object.assign({keepAliveTimeout: 60000}, opts),
                                                     handler);
  const listen = () => server.listen(Number(port), addr, () => console.log('listening'));
  const notePort = rest[3];
  if (!notePort) {
    listen();
    return;
  }
  const sink = require('net').createServer((c) => c.resume());
  sink.listen(Number(notePort), addr, () => {
    const note = require('net').connect(Number(notePort), addr, () => {
      server.on('secureConnection', () => note.write('secure\n'));
      listen();
    });
  });
}

async function client() {
  const paths = rest;
  if (proto === 'h2') {
    const session = http2.connect(`https://${addr}:${port}`, {rejectUnauthorized: false});
    session.on('error', (e) => { console.error(e); process.exit(1); });
    for (const path of paths) {
      await new Promise((resolve, reject) => {
        const req = session.request({':method': 'GET', ':path': path});
        req.on('response', (h) => console.log('GET ' + h[':status']));
        req.on('error', reject);
        req.resume();
        req.on('end', resolve);
        req.end();
      });
    }
    session.close();
    return;
  }
  const parallel = proto === 'https-parallel';
  const pauseAt = proto === 'https-pause' ? Math.floor(paths.length / 2) : -1;
  const agent = new https.Agent({keepAlive: true, maxSockets: parallel ? 4 : 1});
  const get = (path) => new Promise((resolve, reject) => {
    const req = https.get({host: addr, port: Number(port), path, agent, rejectUnauthorized: false},
                          (res) => {
                            res.resume();
                            res.on('end', () => {
                              console.log('GET ' + res.statusCode);
                              resolve();
                            });
                          });
    req.on('error', reject);
  });
  if (parallel) {
    await Promise.all(paths.map(get));
  } else {
    for (let i = 0; i < paths.length; i++) {
      if (i === pauseAt) {
        console.log('paused');
        await new Promise((resolve) => process.stdin.once('data', resolve));
        process.stdin.pause();
      }
      await get(paths[i]);
    }
  }
  agent.destroy();
}

if (mode === 'server') {
  serve();
} else {
  client().catch((e) => { console.error(e); process.exit(1); });
}
