//! `tessera`: administer a Tessera store and call its API from the shell.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kms_cli::{ACTIONS, CliError, open_store, parse_params, request_id, run_action, with_request_id};
use serde_json::{Value, json};

#[derive(Parser)]
#[command(
    name = "tessera",
    version,
    about = "Tessera KMS: `tessera <Action> --Param value …`, as `aliyun kms` does",
    after_help = "Actions take the Alibaba Cloud KMS API's parameter names, e.g.\n  \
        tessera CreateKey --KeySpec EC_P256 --Alias alias/signer\n  \
        tessera Encrypt --KeyId alias/app --Plaintext aGVsbG8= --EncryptionContext '{\"k\":\"v\"}'\n\
        `tessera actions` lists every action. The root key is root.key in the store, or the passphrase\n\
        in TESSERA_PASSPHRASE, or the file named by TESSERA_ROOT_KEY_FILE."
)]
struct Cli {
    /// The store directory [default: $TESSERA_STORE, else ~/.local/share/tessera]
    #[arg(long, global = true, value_name = "DIR")]
    store: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the store (and its root key) if needed and describe it.
    Init,
    /// Apply due work now: automatic rotations and purges of keys whose deletion window ended.
    Maintain,
    /// Walk through the API: keys of several specs, encryption with a context, rotation, signing, deletion.
    Demo,
    /// List the API actions.
    Actions,
    /// An API action, such as CreateKey or Encrypt, with `--Param value` pairs.
    #[command(external_subcommand)]
    Action(Vec<String>),
}

fn run(cli: Cli, request_id: &str) -> Result<Value, CliError> {
    match cli.command {
        Command::Init => {
            let kms = open_store(cli.store)?;
            Ok(json!({
                "Store": kms.store_dir().display().to_string(),
                "AccountId": kms.account_id(),
                "DKMSInstanceId": kms_core::DEFAULT_INSTANCE_ID,
            }))
        }
        Command::Maintain => {
            let kms = open_store(cli.store)?;
            let (rotated, purged) = kms.maintain()?;
            Ok(json!({ "RotatedKeys": rotated, "PurgedKeys": purged }))
        }
        Command::Demo => {
            let kms = open_store(cli.store)?;
            kms_cli::demo::run(&kms, &mut std::io::stdout())?;
            Ok(Value::Null)
        }
        Command::Actions => Ok(json!({ "Actions": ACTIONS })),
        Command::Action(args) => {
            let (action, rest) = args.split_first().ok_or_else(|| CliError {
                http_status: 400,
                code: "MissingParameter".into(),
                message: "an action is required".into(),
            })?;
            let params = parse_params(rest)?;
            let kms = open_store(cli.store)?;
            Ok(with_request_id(run_action(&kms, action, params)?, request_id))
        }
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("TESSERA_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let request_id = request_id();
    match run(cli, &request_id) {
        Ok(Value::Null) => ExitCode::SUCCESS,
        Ok(value) => {
            println!("{}", serde_json::to_string_pretty(&value).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "{}",
                serde_json::to_string_pretty(&e.to_json(&request_id)).unwrap_or_default()
            );
            ExitCode::FAILURE
        }
    }
}
