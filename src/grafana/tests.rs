use super::*;

fn shipped() -> Vec<(String, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards");
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .map(|e| {
            (
                e.file_name().to_string_lossy().to_string(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

fn ds(token: Option<&str>, prometheus_url: &str) -> Datasources {
    Datasources {
        name: "Appliance".into(),
        prometheus_url: prometheus_url.into(),
        appliance_url: "http://mon.example:8080/appliance".into(),
        read_token: token.map(str::to_string),
        scrape_interval: "15s".into(),
    }
}

/// Every Prometheus datasource reference in a dashboard, as `(type, uid)`.
fn refs(v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) => {
            if let Some(d) = m.get("datasource") {
                out.push((
                    d["type"].as_str().unwrap_or("").into(),
                    d["uid"].as_str().unwrap_or("").into(),
                ));
            }
            m.values().for_each(|x| refs(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
        _ => {}
    }
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

#[test]
fn provisioning_files_have_grafanas_fields_and_every_dashboard_bound() {
    let dir = tempfile::tempdir().unwrap();
    let dashboards = shipped();
    assert!(dashboards.len() >= 6, "{dashboards:?}");
    let files = write_provisioning(
        dir.path(),
        &ds(None, "http://mon.example:8080/appliance"),
        "Appliance",
        &dashboards,
        Some("/etc/grafana/provisioning/dashboards/appliance"),
    )
    .unwrap();
    assert_eq!(files.len(), 2 + dashboards.len());

    // Datasources, as Grafana's provisioning docs list the fields.
    let text = std::fs::read_to_string(dir.path().join("datasources/appliance.yaml")).unwrap();
    let v: Value = serde_saphyr::from_str(&text).unwrap();
    assert_eq!(v["apiVersion"], 1);
    let list = v["datasources"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    for d in list {
        assert_eq!(
            keys(d),
            [
                "access",
                "editable",
                "isDefault",
                "jsonData",
                "name",
                "type",
                "uid",
                "url"
            ]
        );
        assert_eq!(d["access"], "proxy");
    }
    assert_eq!(list[0]["type"], "prometheus");
    assert_eq!(list[0]["uid"], PROMETHEUS_UID);
    assert_eq!(list[0]["url"], "http://mon.example:8080/appliance");
    assert_eq!(list[0]["jsonData"]["httpMethod"], "POST");
    assert_eq!(list[0]["jsonData"]["timeInterval"], "15s");
    assert_eq!(list[1]["type"], "alertmanager");
    assert_eq!(list[1]["uid"], ALERTMANAGER_UID);
    assert_eq!(list[1]["jsonData"]["implementation"], "prometheus");

    // The dashboard provider.
    let text = std::fs::read_to_string(dir.path().join("dashboards/appliance.yaml")).unwrap();
    let v: Value = serde_saphyr::from_str(&text).unwrap();
    assert_eq!(v["apiVersion"], 1);
    let p = &v["providers"][0];
    assert_eq!(
        keys(p),
        [
            "allowUiUpdates",
            "disableDeletion",
            "folder",
            "folderUid",
            "name",
            "options",
            "orgId",
            "type",
            "updateIntervalSeconds"
        ]
    );
    assert_eq!(p["type"], "file");
    assert_eq!(p["folder"], "Appliance");
    assert_eq!(
        p["options"]["path"],
        "/etc/grafana/provisioning/dashboards/appliance"
    );

    // Every shipped dashboard, bound to the provisioned uid.
    for (name, _) in &dashboards {
        let text =
            std::fs::read_to_string(dir.path().join("dashboards/appliance").join(name)).unwrap();
        let d: Value = serde_json::from_str(&text).unwrap();
        assert!(d["schemaVersion"].as_i64().unwrap() >= 36, "{name}");
        assert!(d.get("__inputs").is_none(), "{name}");
        assert!(d["id"].is_null(), "{name}");
        let mut r = Vec::new();
        refs(&d["panels"], &mut r);
        assert!(r.len() > 3, "{name}: {r:?}");
        for (t, uid) in &r {
            if t == "prometheus" {
                assert_eq!(uid, PROMETHEUS_UID, "{name}");
            }
        }
        assert!(!text.contains("${datasource}"), "{name}");
        let var = d["templating"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["type"] == "datasource")
            .unwrap();
        assert_eq!(var["current"]["value"], PROMETHEUS_UID);
    }
}

#[test]
fn the_read_token_goes_only_to_the_appliance() {
    let own = ds(Some("tok"), "http://mon.example:8080/appliance/");
    let l = own.list();
    for d in &l {
        assert_eq!(d["jsonData"]["httpHeaderName1"], "Authorization");
        assert_eq!(d["secureJsonData"]["httpHeaderValue1"], "Bearer tok");
    }
    // A real Prometheus fed by remote write gets no appliance token.
    let other = ds(Some("tok"), "http://prometheus:9090");
    let l = other.list();
    assert!(l[0].get("secureJsonData").is_none());
    assert_eq!(l[1]["secureJsonData"]["httpHeaderValue1"], "Bearer tok");
    // The file holding it is private.
    let dir = tempfile::tempdir().unwrap();
    write_provisioning(dir.path(), &own, "A", &[], None).unwrap();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("datasources/appliance.yaml"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn references_are_bound_in_every_form_and_others_left_alone() {
    let d = br#"{"uid":"x","panels":[
        {"datasource":"${DS_PROMETHEUS}","targets":[{"datasource":{"type":"prometheus"}}]},
        {"datasource":{"type":"prometheus","uid":"$datasource"}},
        {"datasource":{"type":"prometheus","uid":"fixed"}},
        {"datasource":{"type":"loki","uid":"${loki}"}},
        {"type":"row","panels":[{"datasource":{"type":"prometheus","uid":""}}]}
    ]}"#;
    let v = bind_dashboard("x.json", d, "A").unwrap();
    let mut r = Vec::new();
    refs(&v, &mut r);
    assert_eq!(
        r,
        [
            ("prometheus", "appliance"),
            ("prometheus", "appliance"),
            ("prometheus", "appliance"),
            ("prometheus", "fixed"),
            ("loki", "${loki}"),
            ("prometheus", "appliance"),
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    for bad in [&b"[]"[..], b"{\"title\":\"no uid\"}", b"not json"] {
        assert!(bind_dashboard("b.json", bad, "A").is_err());
    }
    // A hostile nesting depth is bounded, not a stack overflow.
    let deep = format!(
        "{{\"uid\":\"d\",\"p\":{}1{}}}",
        "[".repeat(5000),
        "]".repeat(5000)
    );
    let _ = bind_dashboard("deep.json", deep.as_bytes(), "A");
}

#[test]
fn config_refuses_two_credentials_and_bad_urls() {
    let ok = GrafanaConfig {
        url: "http://grafana:3000".into(),
        folder: "Appliance".into(),
        ..Default::default()
    };
    assert!(ok.validate().is_ok());
    let two = GrafanaConfig {
        api_token: Some(Secret::new("t")),
        api_token_file: "/f".into(),
        ..ok.clone()
    };
    assert!(two.validate().unwrap_err().contains("at most one"));
    let bad = GrafanaConfig {
        url: "grafana:3000".into(),
        ..ok.clone()
    };
    assert!(bad.validate().is_err());
}
