// An independent OPC UA client (node-opcua) for tests/opcua/test_node_opcua.py.
// Connects with Basic256Sha256 + SignAndEncrypt and a username, resolves our namespace by its
// URI, reads one variable, subscribes to it, and prints one JSON line per event on stdout.
import {
  OPCUAClient, MessageSecurityMode, SecurityPolicy, AttributeIds, UserTokenType,
  ClientSubscription, ClientMonitoredItem, TimestampsToReturn,
  DataChangeFilter, DataChangeTrigger, DeadbandType,
} from "node-opcua-client";
import { OPCUACertificateManager } from "node-opcua-certificate-manager";

const env = process.env;
const say = (event) => process.stdout.write(JSON.stringify(event) + "\n");

async function main() {
  const certificateManager = new OPCUACertificateManager({
    rootFolder: env.NODE_PKI, automaticallyAcceptUnknownCertificate: false,
  });
  await certificateManager.initialize();
  const client = OPCUAClient.create({
    applicationName: "node-opcua check",
    applicationUri: env.APP_URI,
    securityMode: MessageSecurityMode.SignAndEncrypt,
    securityPolicy: SecurityPolicy.Basic256Sha256,
    certificateFile: env.CERT,
    privateKeyFile: env.KEY,
    clientCertificateManager: certificateManager,
    endpointMustExist: false,
    connectionStrategy: { maxRetry: 0 },
  });
  await client.connect(env.URL);
  const session = await client.createSession({
    type: UserTokenType.UserName, userName: env.OPCUA_USER, password: env.OPCUA_PASSWORD,
  });
  const namespaces = (await session.read({ nodeId: "ns=0;i=2255", attributeId: AttributeIds.Value })).value.value;
  const ns = namespaces.indexOf(env.NS_URI);
  if (ns < 0) throw new Error("namespace not found");
  const nodeId = `ns=${ns};s=${env.NODE}`;
  const first = await session.read({ nodeId, attributeId: AttributeIds.Value });
  say({ event: "read", status: first.statusCode.name, value: first.value.value, ns });

  const subscription = ClientSubscription.create(session, {
    requestedPublishingInterval: 100, requestedLifetimeCount: 100, requestedMaxKeepAliveCount: 10,
    maxNotificationsPerPublish: 100, publishingEnabled: true, priority: 1,
  });
  const item = ClientMonitoredItem.create(subscription, { nodeId, attributeId: AttributeIds.Value }, {
    samplingInterval: 0, queueSize: 10, discardOldest: true,
    filter: new DataChangeFilter({ trigger: DataChangeTrigger.StatusValue,
      deadbandType: DeadbandType.Absolute, deadbandValue: 1.0 }),
  }, TimestampsToReturn.Both);
  let changes = 0;
  const wanted = Number(env.CHANGES || 2);
  const done = new Promise((resolve) => {
    item.on("changed", (dataValue) => {
      changes += 1;
      say({ event: "change", status: dataValue.statusCode.name, value: dataValue.value.value });
      if (changes >= wanted) resolve();
    });
  });
  item.on("initialized", () => say({ event: "subscribed" }));
  const timeout = new Promise((_, reject) => setTimeout(() => reject(new Error("timeout")), 20000));
  await Promise.race([done, timeout]);
  await subscription.terminate();
  await session.close();
  await client.disconnect();
  await certificateManager.dispose();
}

main().then(() => process.exit(0), (err) => {
  say({ event: "error", message: String(err && err.message || err) });
  process.exit(1);
});
