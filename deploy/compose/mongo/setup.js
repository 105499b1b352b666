// One-shot `mongo-setup` service of docker-compose.yml (mongosh, as the root user), run on every
// `up`: creates or updates one role and one user per KazPost service in the KazPost database,
// with just the actions on just the collections that service needs. Idempotent; re-running it
// with new passwords rotates them. Passwords come from the environment (.env.example).
const dbName = process.env.KAZPOST_MONGO_DATABASE || "kazpost";
const conn = new Mongo(`mongodb://${process.env.MONGO_HOST || "mongo:27017"}/`);
if (!conn.getDB("admin").auth(process.env.MONGO_ROOT_USER || "root", process.env.MONGO_ROOT_PASSWORD)) {
  throw new Error("could not log in as the MongoDB root user (MONGO_ROOT_USER / MONGO_ROOT_PASSWORD)");
}
const target = conn.getDB(dbName);

const READ = ["find"];
const WRITE = ["find", "insert", "update", "remove"];
const on = (collection, actions) => ({ resource: { db: dbName, collection }, actions });
// Every service lists the collections at start-up (creating a missing one is `operator`'s job).
const LIST = { resource: { db: dbName, collection: "" }, actions: ["listCollections"] };

const services = {
  storage: [LIST, on("articles", WRITE), on("article_versions", WRITE), on("fronts", WRITE)],
  linking: [LIST, on("articles", READ), on("fronts", READ), on("related", WRITE)],
  narration: [LIST, on("articles", READ), on("fronts", READ), on("audio", WRITE), on("audio_chunks", WRITE)],
  newsletter: [LIST, on("fronts", READ), on("subscribers", WRITE)],
  gateway: [on("articles", READ), on("fronts", READ), on("related", READ), on("audio", READ), on("audio_chunks", READ)],
};

function password(name) {
  const variable = `MONGO_${name.toUpperCase()}_PASSWORD`;
  const value = process.env[variable];
  if (!value || value.length < 16) throw new Error(`${variable}: set a password of 16 or more characters`);
  return value;
}

function ensureRole(role, privileges, roles) {
  if (target.getRole(role)) target.updateRole(role, { privileges, roles });
  else target.createRole({ role, privileges, roles });
}

function ensureUser(user, pwd, roles) {
  if (target.getUser(user)) target.updateUser(user, { pwd, roles });
  else target.createUser({ user, pwd, roles });
  print(`user ${user} in ${dbName}`);
}

for (const [name, privileges] of Object.entries(services)) {
  ensureRole(`kazpost_${name}`, privileges, []);
  ensureUser(name, password(name), [{ role: `kazpost_${name}`, db: dbName }]);
}
// kazpost init / status / rebuild: creates the collections, reads and rewrites the read models.
ensureUser("operator", password("operator"), [{ role: "readWrite", db: dbName }, { role: "dbAdmin", db: dbName }]);
print("mongodb users and roles are in place");
