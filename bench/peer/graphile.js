// Peer benchmark: Graphile Worker 0.16 (concurrency 20) drains N jobs, each POSTing one WeCom
// text body to a local sink (the project's stand-in, URL in SINK). Prints one JSON line.
// usage: DATABASE_URL=... SINK=http://127.0.0.1:PORT/cgi-bin/webhook/send?key=k N=10000 node graphile.js
const { run, quickAddJob, makeWorkerUtils } = require("graphile-worker");
const http = require("http");

const N = +(process.env.N || 10000);
const SINK = new URL(process.env.SINK);
const agent = new http.Agent({ keepAlive: true, maxSockets: 50 });

function post(body) {
  return new Promise((resolve, reject) => {
    const req = http.request(SINK, { method: "POST", agent, headers: { "content-type": "application/json" } }, (res) => {
      let data = "";
      res.on("data", (c) => (data += c));
      res.on("end", () => (JSON.parse(data).errcode === 0 ? resolve() : reject(new Error(data))));
    });
    req.on("error", reject);
    req.end(JSON.stringify(body));
  });
}

async function main() {
  const connectionString = process.env.DATABASE_URL;
  const utils = await makeWorkerUtils({ connectionString });
  await utils.migrate();
  await utils.withPgClient((c) =>
    c.query(
      `select graphile_worker.add_jobs(array(select json_populate_record(null::graphile_worker.job_spec,
         json_build_object('identifier', 'wecom', 'payload', json_build_object('msgtype', 'text', 'text', json_build_object('content', 'peer message ' || i))))
       from generate_series(1, $1) i))`,
      [N]
    )
  );
  let done = 0;
  let finish;
  const finished = new Promise((r) => (finish = r));
  const started = Date.now();
  const runner = await run({
    connectionString,
    concurrency: 20,
    noHandleSignals: true,
    pollInterval: 1000,
    logger: new (require("graphile-worker").Logger)(() => () => {}),
    taskList: {
      wecom: async (payload) => {
        await post(payload);
        if (++done === N) finish();
      },
    },
  });
  await finished;
  // Jobs are deleted when complete; wait until the queue is empty.
  for (;;) {
    const { rows } = await utils.withPgClient((c) => c.query("select count(*)::int n from graphile_worker._private_jobs"));
    if (rows[0].n === 0) break;
    await new Promise((r) => setTimeout(r, 10));
  }
  const secs = (Date.now() - started) / 1000;
  await runner.stop();
  await utils.release();
  console.log(JSON.stringify({ scenario: "peer-graphile-worker", version: "0.16", concurrency: 20, jobs: N, jobs_per_s: Math.round(N / secs) }));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
