use super::*;
use crate::dag::DagBag;

async fn service(backend: crate::store::Backend) -> (crate::store::testing::TestDb, Service) {
    let db = crate::store::testing::TestDb::open(backend).await;
    let service = Service::with_bag(db.store(), DagBag::default());
    (db, service)
}

#[test]
fn each_role_allows_what_the_roles_below_it_allow() {
    assert!(Role::Admin.allows(Role::Op) && Role::Admin.allows(Role::Viewer));
    assert!(Role::Op.allows(Role::Op) && Role::Op.allows(Role::Viewer));
    assert!(!Role::Op.allows(Role::Admin));
    assert!(Role::Viewer.allows(Role::Viewer) && !Role::Viewer.allows(Role::Op));
    assert_eq!("op".parse::<Role>().unwrap(), Role::Op);
    assert!("root".parse::<Role>().is_err());
}

async fn a_password_verifies_against_its_hash_and_nothing_else_does(
    backend: crate::store::Backend,
) {
    let (_db, service) = service(backend).await;
    assert_eq!(service.auth_mode().await.unwrap(), AuthMode::Off);
    service.add_user("ann", Role::Op, "s3cret").await.unwrap();
    assert_eq!(service.auth_mode().await.unwrap(), AuthMode::On);
    let ann = service.authenticate("ann", "s3cret").await.unwrap();
    assert_eq!(ann.map(|p| p.role), Some(Role::Op));
    assert_eq!(service.authenticate("ann", "wrong").await.unwrap(), None);
    assert_eq!(service.authenticate("bob", "s3cret").await.unwrap(), None);
    let err = service.add_user("ann", Role::Op, "x").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "user 'ann' already exists (see `orchestrator users set-password`)"
    );
    let err = service.add_user("a b", Role::Op, "x").await.unwrap_err();
    assert!(
        err.to_string().starts_with("invalid user name 'a b'"),
        "{err}"
    );
    let err = service.add_user("bob", Role::Op, "").await.unwrap_err();
    assert_eq!(err.to_string(), "the password must not be empty");
}

async fn a_token_carries_the_users_current_role_until_it_expires(backend: crate::store::Backend) {
    let (_db, service) = service(backend).await;
    service.add_user("ann", Role::Op, "pw").await.unwrap();
    let ann = Principal {
        name: "ann".into(),
        role: Role::Op,
    };
    let token = service.issue_token(&ann).await.unwrap();
    assert_eq!(
        service.verify_token(&token).await.unwrap(),
        Some(ann.clone())
    );

    // A role change applies to tokens already issued.
    service.remove_user("ann").await.unwrap();
    assert_eq!(service.verify_token(&token).await.unwrap(), None);
    service.add_user("ann", Role::Viewer, "pw").await.unwrap();
    let token = service.issue_token(&ann).await.unwrap();
    let now = service.verify_token(&token).await.unwrap().unwrap();
    assert_eq!(now.role, Role::Viewer);

    let past = Utc::now().timestamp() - 7200;
    let expired = service
        .issue_token_at(&ann, past, Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(service.verify_token(&expired).await.unwrap(), None);
}

async fn a_tampered_or_foreign_token_is_refused(backend: crate::store::Backend) {
    let (_db, service) = service(backend).await;
    service.add_user("ann", Role::Viewer, "pw").await.unwrap();
    let ann = Principal {
        name: "ann".into(),
        role: Role::Viewer,
    };
    let token = service.issue_token(&ann).await.unwrap();
    let mut parts: Vec<String> = token.split('.').map(String::from).collect();
    let claims = String::from_utf8(URL_SAFE_NO_PAD.decode(&parts[1]).unwrap()).unwrap();
    parts[1] = URL_SAFE_NO_PAD.encode(claims.replace("\"viewer\"", "\"admin\""));
    assert_eq!(service.verify_token(&parts.join(".")).await.unwrap(), None);
    assert_eq!(service.verify_token("not.a.token").await.unwrap(), None);
    // Signed with another store's key.
    let (_other_db, other) = self::service(backend).await;
    other.add_user("ann", Role::Viewer, "pw").await.unwrap();
    let foreign = other.issue_token(&ann).await.unwrap();
    assert_eq!(service.verify_token(&foreign).await.unwrap(), None);
}

async fn a_password_change_ends_older_tokens(backend: crate::store::Backend) {
    let (_db, service) = service(backend).await;
    service.add_user("ann", Role::Viewer, "pw").await.unwrap();
    let ann = Principal {
        name: "ann".into(),
        role: Role::Viewer,
    };
    let old = service
        .issue_token_at(&ann, Utc::now().timestamp() - 60, TOKEN_LIFETIME)
        .await
        .unwrap();
    service.set_password("ann", "new").await.unwrap();
    assert_eq!(service.verify_token(&old).await.unwrap(), None);
    assert!(service.authenticate("ann", "new").await.unwrap().is_some());
    let err = service.set_password("bob", "x").await.unwrap_err();
    assert!(err.is_not_found());
}

async fn the_wake_secret_is_needed_only_once_users_exist(backend: crate::store::Backend) {
    let (_db, service) = service(backend).await;
    assert!(service.wake_allowed(None).await.unwrap());
    service.add_user("ann", Role::Viewer, "pw").await.unwrap();
    assert!(!service.wake_allowed(None).await.unwrap());
    assert!(!service.wake_allowed(Some("guess")).await.unwrap());
    let secret = service.wake_secret().await.unwrap();
    assert!(service.wake_allowed(Some(&secret)).await.unwrap());
}

async fn a_server_requiring_auth_stays_closed_when_its_last_user_goes(
    backend: crate::store::Backend,
) {
    let (_db, service) = service(backend).await;
    let service = service.with_auth_required(true);
    assert_eq!(service.auth_mode().await.unwrap(), AuthMode::NoUsers);
    service.add_user("ann", Role::Admin, "pw").await.unwrap();
    assert_eq!(service.auth_mode().await.unwrap(), AuthMode::On);
    service.remove_user("ann").await.unwrap();
    assert_eq!(service.auth_mode().await.unwrap(), AuthMode::NoUsers);
    assert!(!service.any_user().await.unwrap());
    // The CLI still wakes it: it always sends the store's secret.
    assert!(!service.wake_allowed(None).await.unwrap());
    let secret = service.wake_secret().await.unwrap();
    assert!(service.wake_allowed(Some(&secret)).await.unwrap());
}

async fn a_role_change_applies_to_tokens_already_issued(backend: crate::store::Backend) {
    let (_db, service) = service(backend).await;
    service.add_user("ann", Role::Viewer, "pw").await.unwrap();
    let ann = service.authenticate("ann", "pw").await.unwrap().unwrap();
    let token = service.issue_token(&ann).await.unwrap();
    let user = service.set_role("ann", Role::Op).await.unwrap();
    assert_eq!((user.name.as_str(), user.role), ("ann", Role::Op));
    let now = service.verify_token(&token).await.unwrap().unwrap();
    assert_eq!(now.role, Role::Op);
    assert!(matches!(
        service.set_role("bob", Role::Op).await,
        Err(ServiceError::UnknownUser(_))
    ));
}

crate::store::testing::on_both!(
    a_password_verifies_against_its_hash_and_nothing_else_does,
    a_token_carries_the_users_current_role_until_it_expires,
    a_tampered_or_foreign_token_is_refused,
    a_password_change_ends_older_tokens,
    the_wake_secret_is_needed_only_once_users_exist,
    a_server_requiring_auth_stays_closed_when_its_last_user_goes,
    a_role_change_applies_to_tokens_already_issued,
);
