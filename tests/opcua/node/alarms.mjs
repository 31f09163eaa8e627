// An independent alarm client (node-opcua) for tests/opcua/test_node_opcua.py.
// Subscribes to OffNormalAlarmType events on the Server object (SignAndEncrypt, a username),
// calls ConditionRefresh, prints one JSON line per alarm event, and acknowledges the first
// active, unacknowledged alarm of DER env.DER with node-opcua's own acknowledgeCondition.
// Ends after it has seen that alarm acknowledged.
import {
  OPCUAClient, MessageSecurityMode, SecurityPolicy, AttributeIds, UserTokenType,
  ClientSubscription, ClientMonitoredItem, TimestampsToReturn, constructEventFilter,
  acknowledgeCondition, callConditionRefresh, resolveNodeId, ContentFilterElement,
  FilterOperator, SimpleAttributeOperand, LiteralOperand, Variant, DataType,
} from "node-opcua-client";
import { OPCUACertificateManager } from "node-opcua-certificate-manager";

const env = process.env;
const say = (event) => process.stdout.write(JSON.stringify(event) + "\n");
const FIELDS = ["EventId", "ConditionName", "SourceName", "Severity", "Message", "Retain",
  "ActiveState.Id", "AckedState.Id", "ClientUserId", "ConditionId"];

function ofType(typeName) {
  // EventType OfType OffNormalAlarmType (Part 4, 7.7.3)
  return new ContentFilterElement({
    filterOperator: FilterOperator.OfType,
    filterOperands: [new LiteralOperand({
      value: new Variant({ dataType: DataType.NodeId, value: resolveNodeId(typeName) }),
    })],
  });
}

async function main() {
  const certificateManager = new OPCUACertificateManager({
    rootFolder: env.NODE_PKI, automaticallyAcceptUnknownCertificate: false,
  });
  await certificateManager.initialize();
  const client = OPCUAClient.create({
    applicationName: "node-opcua alarm check",
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
  const subscription = ClientSubscription.create(session, {
    requestedPublishingInterval: 100, requestedLifetimeCount: 100, requestedMaxKeepAliveCount: 10,
    maxNotificationsPerPublish: 100, publishingEnabled: true, priority: 1,
  });
  await new Promise((resolve) => subscription.on("started", resolve));
  const item = ClientMonitoredItem.create(subscription,
    { nodeId: resolveNodeId("Server"), attributeId: AttributeIds.EventNotifier },
    { queueSize: 100, filter: constructEventFilter(FIELDS, ofType("OffNormalAlarmType")) },
    TimestampsToReturn.Neither);
  let acknowledging = false;
  const done = new Promise((resolve, reject) => {
    item.on("changed", (fields) => {
      const event = Object.fromEntries(FIELDS.map((name, i) => [name, fields[i].value]));
      const out = {
        event: "alarm", der: event.SourceName, name: event.ConditionName,
        active: event["ActiveState.Id"], acked: event["AckedState.Id"], retain: event.Retain,
        severity: event.Severity, user: event.ClientUserId,
        condition: event.ConditionId ? event.ConditionId.toString() : null,
      };
      say(out);
      if (out.der !== env.DER) return;
      if (out.active && out.acked) { resolve(); return; }
      if (out.active && !out.acked && !acknowledging) {
        acknowledging = true;
        acknowledgeCondition(session, event.ConditionId, event.EventId, "node-opcua operator")
          .then((status) => say({ event: "acknowledged", status: status.name }), reject);
      }
    });
  });
  item.on("initialized", async () => {
    const status = await callConditionRefresh(session, subscription.subscriptionId);
    say({ event: "subscribed", refresh: status.name });
  });
  const timeout = new Promise((_, reject) => setTimeout(() => reject(new Error("timeout")), 30000));
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
