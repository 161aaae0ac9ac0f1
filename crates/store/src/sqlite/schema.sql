-- novanet state, schema version 1. Hot columns (addresses, flags, owners) are real columns
-- with indexes; the rest of a network or instance record is its JSON, written together with
-- the columns by one function so that the two never disagree.
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);

CREATE TABLE IF NOT EXISTS networks (
    id INTEGER PRIMARY KEY,
    uuid TEXT NOT NULL UNIQUE,
    label TEXT NOT NULL,
    cidr TEXT,
    cidr_v6 TEXT,
    vlan INTEGER UNIQUE,
    project_id TEXT,
    host TEXT,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS networks_host ON networks (host) WHERE host IS NOT NULL;

CREATE TABLE IF NOT EXISTS fixed_ips (
    id INTEGER PRIMARY KEY,
    network_id INTEGER NOT NULL REFERENCES networks(id),
    address TEXT NOT NULL UNIQUE,
    address_int INTEGER NOT NULL,
    allocated INTEGER NOT NULL DEFAULT 0,
    leased INTEGER NOT NULL DEFAULT 0,
    reserved INTEGER NOT NULL DEFAULT 0,
    instance_uuid TEXT,
    vif_id INTEGER,
    host TEXT,
    -- 0 = never used; otherwise the unix time of the last change. Free addresses are handed
    -- out oldest-released first, as nova did, so a just-freed address is not reused at once
    -- while a never-used one is left.
    updated_at INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS fixed_ips_free ON fixed_ips (network_id, updated_at, address_int)
    WHERE instance_uuid IS NULL AND reserved = 0 AND host IS NULL AND leased = 0;
CREATE INDEX IF NOT EXISTS fixed_ips_instance ON fixed_ips (instance_uuid);
CREATE INDEX IF NOT EXISTS fixed_ips_network ON fixed_ips (network_id, address_int);
-- The addresses bound to VIFs (what a DHCP server hands out), without the free ones.
CREATE INDEX IF NOT EXISTS fixed_ips_bound ON fixed_ips (network_id, address_int)
    WHERE vif_id IS NOT NULL;

CREATE TABLE IF NOT EXISTS vifs (
    id INTEGER PRIMARY KEY,
    uuid TEXT NOT NULL UNIQUE,
    mac TEXT NOT NULL UNIQUE,
    network_id INTEGER NOT NULL,
    instance_uuid TEXT NOT NULL,
    -- The host-side device the hypervisor plugged it into, as it reports.
    device TEXT
);
CREATE INDEX IF NOT EXISTS vifs_instance ON vifs (instance_uuid);

CREATE TABLE IF NOT EXISTS instances (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    uuid TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    project_id TEXT NOT NULL,
    host TEXT,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS instances_project ON instances (project_id);
-- A host's plan starts from its instances.
CREATE INDEX IF NOT EXISTS instances_host ON instances (host) WHERE host IS NOT NULL;

CREATE TABLE IF NOT EXISTS floating_ips (
    id INTEGER PRIMARY KEY,
    address TEXT NOT NULL UNIQUE,
    address_int INTEGER NOT NULL,
    pool TEXT NOT NULL,
    interface TEXT NOT NULL,
    project_id TEXT,
    fixed_ip_id INTEGER,
    host TEXT,
    auto_assigned INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS floating_free ON floating_ips (pool, address_int) WHERE project_id IS NULL;
CREATE INDEX IF NOT EXISTS floating_fixed ON floating_ips (fixed_ip_id);
CREATE INDEX IF NOT EXISTS floating_host ON floating_ips (host) WHERE host IS NOT NULL;

CREATE TABLE IF NOT EXISTS security_groups (
    id INTEGER PRIMARY KEY,
    project_id TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    UNIQUE (project_id, name)
);
CREATE TABLE IF NOT EXISTS security_group_rules (
    id INTEGER PRIMARY KEY,
    parent_group_id INTEGER NOT NULL REFERENCES security_groups(id),
    protocol TEXT,
    from_port INTEGER,
    to_port INTEGER,
    cidr TEXT,
    group_id INTEGER
);
CREATE INDEX IF NOT EXISTS security_group_rules_parent ON security_group_rules (parent_group_id);
CREATE INDEX IF NOT EXISTS security_group_rules_source ON security_group_rules (group_id)
    WHERE group_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS security_group_default_rules (
    id INTEGER PRIMARY KEY,
    protocol TEXT NOT NULL,
    from_port INTEGER NOT NULL,
    to_port INTEGER NOT NULL,
    cidr TEXT NOT NULL
);
-- nova's provider_fw_rules (Liberty and earlier): admin-wide drops for every instance.
CREATE TABLE IF NOT EXISTS provider_fw_rules (
    id INTEGER PRIMARY KEY,
    protocol TEXT NOT NULL,
    from_port INTEGER NOT NULL,
    to_port INTEGER NOT NULL,
    cidr TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS instance_security_groups (
    instance_uuid TEXT NOT NULL,
    group_id INTEGER NOT NULL,
    PRIMARY KEY (instance_uuid, group_id)
) WITHOUT ROWID;
-- A group's members (the member addresses a host's plan lists; the hosts a rule reaches).
CREATE INDEX IF NOT EXISTS instance_security_groups_group ON instance_security_groups (group_id);

CREATE TABLE IF NOT EXISTS projects (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS users (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    salt TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS role_assignments (
    user_id TEXT NOT NULL,
    project_id TEXT NOT NULL,
    role TEXT NOT NULL,
    PRIMARY KEY (user_id, project_id, role)
);
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    project_id TEXT NOT NULL,
    issued_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS keypairs (
    user_id TEXT NOT NULL,
    name TEXT NOT NULL,
    public_key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    type TEXT NOT NULL DEFAULT 'ssh',
    created_at INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, name)
);
-- Per-project quota overrides (os-quota-sets); absent rows take the configured defaults.
CREATE TABLE IF NOT EXISTS quotas (
    project_id TEXT NOT NULL,
    resource TEXT NOT NULL,
    hard_limit INTEGER NOT NULL,
    PRIMARY KEY (project_id, resource)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS services (
    host TEXT PRIMARY KEY,
    network_host INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    -- JSON list of the IPv4 networks on the host's own interfaces, as its agent reports them.
    networks TEXT NOT NULL DEFAULT '[]',
    -- JSON object of the host's own options (HostOptions).
    options TEXT NOT NULL DEFAULT '{}'
);
-- Each host's latest diagnosis (JSON, as its agent sends it with a heartbeat).
CREATE TABLE IF NOT EXISTS host_diagnoses (
    host TEXT PRIMARY KEY,
    reported_at INTEGER NOT NULL,
    report TEXT NOT NULL
);

-- What each change touched, so that a change costs what it touches (NOTES.md, "A change
-- costs what it touches"). Every write that can change a host's plan records, under the
-- new generation, the hosts whose plans it may change and how much of them: `what` is ''
-- for anything of the plan (host '*': every host's), 'a:NETWORK_ID:ADDRESS' for one DHCP
-- entry on the host serving that network, 'i:UUID[:NETWORK_ID,...]' for one instance of
-- the host (and the networks it was on), 'f:ADDRESS' for one floating IP bound there. Servers read the log after their cursor; old
-- rows are pruned (meta 'changes_from').
CREATE TABLE IF NOT EXISTS host_changes (
    generation INTEGER NOT NULL,
    host TEXT NOT NULL,
    what TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (generation, host, what)
) WITHOUT ROWID;
-- The last generation that touched each host: what an agent's long poll waits on.
CREATE TABLE IF NOT EXISTS host_generations (
    host TEXT PRIMARY KEY,
    generation INTEGER NOT NULL
) WITHOUT ROWID;

-- Instances per host, kept by triggers: the scheduler reads these instead of every instance.
CREATE TABLE IF NOT EXISTS host_instance_counts (
    host TEXT PRIMARY KEY,
    instances INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS instances_count_insert AFTER INSERT ON instances
WHEN NEW.host IS NOT NULL BEGIN
    INSERT INTO host_instance_counts(host, instances) VALUES (NEW.host, 1)
        ON CONFLICT(host) DO UPDATE SET instances = instances + 1;
END;
CREATE TRIGGER IF NOT EXISTS instances_count_delete AFTER DELETE ON instances
WHEN OLD.host IS NOT NULL BEGIN
    UPDATE host_instance_counts SET instances = instances - 1 WHERE host = OLD.host;
END;
CREATE TRIGGER IF NOT EXISTS instances_count_move AFTER UPDATE OF host ON instances
WHEN OLD.host IS NOT NEW.host BEGIN
    UPDATE host_instance_counts SET instances = instances - 1 WHERE host = OLD.host;
    INSERT INTO host_instance_counts(host, instances) SELECT NEW.host, 1 WHERE NEW.host IS NOT NULL
        ON CONFLICT(host) DO UPDATE SET instances = instances + 1;
END;

-- The tail of each VM's serial console, as its host's hypervisor driver last reported it.
CREATE TABLE IF NOT EXISTS consoles (
    instance_uuid TEXT PRIMARY KEY REFERENCES instances(uuid) ON DELETE CASCADE,
    text TEXT NOT NULL
);
