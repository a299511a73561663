//! Connection settings as libpq reads them — `~/.pgpass` and `PGSERVICE` — against the
//! harness's role that must give its password.

use coldquery_tests::harness::{PASSWORD_ROLE, ROLE_PASSWORD, password_url, test_db};

use crate::support::run_with;

/// `scheme://user:password@host:port/db?query` → (host, port, db).
fn parts(url: &str) -> (String, String, String) {
    let rest = url.split_once("://").expect("a URL").1;
    let (authority, path) = rest.split_once('/').expect("a database in the URL");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = host_port.rsplit_once(':').unwrap_or((host_port, "5432"));
    let db = path.split('?').next().unwrap_or_default();
    (host.to_owned(), port.to_owned(), db.to_owned())
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("coldquery-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn pgpass_supplies_the_password_and_is_ignored_when_others_may_read_it() {
    use std::os::unix::fs::PermissionsExt;
    let db = test_db().await;
    let with_password = password_url(&db, ROLE_PASSWORD);
    let url = with_password.replacen(&format!(":{ROLE_PASSWORD}@"), "@", 1);
    assert_ne!(url, with_password, "the URL without its password");
    let home = scratch("pgpass");
    let env = [("DATABASE_URL", url.as_str()), ("HOME", home.to_str().unwrap())];
    let query = ["-At", "-c", "SELECT current_user"];

    let out = run_with(&query, &env, None).await.expect(1);
    assert!(out.stderr.contains("password"), "no password, and the error says so: {}", out.stderr);

    let (host, port, database) = parts(&url);
    let pgpass = home.join(".pgpass");
    std::fs::write(
        &pgpass,
        format!("# comment\nother:1:*:*:nope\n{host}:{port}:{database}:{PASSWORD_ROLE}:{ROLE_PASSWORD}\n"),
    )
    .unwrap();
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = run_with(&query, &env, None).await.expect(1);
    assert!(out.stderr.contains("has group or world access"), "{}", out.stderr);

    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = run_with(&query, &env, None).await.expect(0);
    assert_eq!(out.stdout, format!("{PASSWORD_ROLE}\n"), "{}", out.stderr);
    std::fs::remove_dir_all(&home).unwrap();
}

#[tokio::test]
async fn pgservice_names_a_section_of_the_service_file() {
    let db = test_db().await;
    let (host, port, database) = parts(&db.url);
    let user = db.url.split_once("://").unwrap().1.split(['@', ':']).next().unwrap().to_owned();
    let dir = scratch("service");
    let file = dir.join("services.conf");
    std::fs::write(&file, format!("[other]\nhost=nowhere.invalid\n\n[test]\n# ours\nhost={host}\nport={port}\ndbname={database}\nuser={user}\n"))
        .unwrap();
    let file = file.to_str().unwrap();
    let query = ["-At", "-c", "SELECT current_database()"];
    let out = run_with(&query, &[("PGSERVICEFILE", file), ("PGSERVICE", "test")], None).await.expect(0);
    assert_eq!(out.stdout, format!("{database}\n"), "{}", out.stderr);

    let out = run_with(&query, &[("PGSERVICEFILE", file), ("PGSERVICE", "missing")], None).await.expect(2);
    assert!(out.stderr.contains("definition of service \"missing\" not found"), "{}", out.stderr);
    std::fs::remove_dir_all(&dir).unwrap();
}
