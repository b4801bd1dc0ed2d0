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

    /// Act as this RAM principal, e.g. acs:ram::1234567890123456:user/alice [default: the
    /// store's account root]
    #[arg(long, global = true, value_name = "ARN")]
    principal: Option<String>,

    /// The caller's source address, for policies' acs:SourceIp conditions
    #[arg(long = "source-ip", global = true, value_name = "IP")]
    source_ip: Option<String>,

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
    /// The PKCS#11 token of an instance: its label and PINs, as `pkcs11-tool --init-token`,
    /// `--init-pin` and `--change-pin` set them. PINs come from the options or, to keep them off
    /// the command line, from TESSERA_SO_PIN, TESSERA_PIN and TESSERA_NEW_PIN.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
        /// The KMS instance whose token this is.
        #[arg(long, global = true, default_value = kms_core::DEFAULT_INSTANCE_ID)]
        instance: String,
    },
    /// An API action, such as CreateKey or Encrypt, with `--Param value` pairs.
    #[command(external_subcommand)]
    Action(Vec<String>),
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Show the token's label and whether its PINs are set.
    Info,
    /// Initialise the token (set its label and SO PIN; re-initialising needs the current SO PIN
    /// and clears the user PIN). Keys are never destroyed by it.
    Init {
        /// The token label (1–32 bytes).
        #[arg(long)]
        label: String,
        /// The SO PIN [env: TESSERA_SO_PIN].
        #[arg(long, env = "TESSERA_SO_PIN", hide_env_values = true)]
        so_pin: String,
    },
    /// Set the user PIN, on the SO PIN's authority.
    InitPin {
        /// The SO PIN [env: TESSERA_SO_PIN].
        #[arg(long, env = "TESSERA_SO_PIN", hide_env_values = true)]
        so_pin: String,
        /// The new user PIN [env: TESSERA_PIN].
        #[arg(long, env = "TESSERA_PIN", hide_env_values = true)]
        pin: String,
    },
    /// Print the Argon2id hash of a PIN, for `pin_principals` in the PKCS#11 module's
    /// configuration (a user PIN that acts as its own principal).
    HashPin {
        /// The PIN [env: TESSERA_PIN].
        #[arg(long, env = "TESSERA_PIN", hide_env_values = true)]
        pin: String,
    },
    /// Change a PIN (the user's, or the SO's with --so).
    SetPin {
        /// Change the SO PIN instead of the user PIN.
        #[arg(long)]
        so: bool,
        /// The current PIN [env: TESSERA_PIN].
        #[arg(long, env = "TESSERA_PIN", hide_env_values = true)]
        old_pin: String,
        /// The new PIN [env: TESSERA_NEW_PIN].
        #[arg(long, env = "TESSERA_NEW_PIN", hide_env_values = true)]
        new_pin: String,
    },
}

fn token(kms: &kms_core::Kms, instance: &str, command: TokenCommand) -> Result<Value, CliError> {
    match command {
        TokenCommand::Info => {}
        TokenCommand::HashPin { pin } => {
            return Ok(json!({ "PinHash": kms_core::hash_pin(pin.as_bytes())? }));
        }
        TokenCommand::Init { label, so_pin } => kms.init_token(instance, so_pin.as_bytes(), &label)?,
        TokenCommand::InitPin { so_pin, pin } => kms.init_user_pin(instance, so_pin.as_bytes(), pin.as_bytes())?,
        TokenCommand::SetPin { so, old_pin, new_pin } => {
            let role = if so {
                kms_core::PinRole::SecurityOfficer
            } else {
                kms_core::PinRole::User
            };
            kms.set_pin(instance, role, old_pin.as_bytes(), new_pin.as_bytes())?
        }
    }
    let info = kms.token_info(instance)?;
    Ok(json!({
        "DKMSInstanceId": info.instance_id,
        "Label": info.label,
        "TokenInitialized": info.initialized,
        "UserPinInitialized": info.user_pin_initialized,
    }))
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
        // Hashing a PIN needs no store (and must not create one).
        Command::Token {
            command: TokenCommand::HashPin { pin },
            ..
        } => Ok(json!({ "PinHash": kms_core::hash_pin(pin.as_bytes())? })),
        Command::Token { command, instance } => token(&open_store(cli.store)?, &instance, command),
        Command::Action(args) => {
            let (action, rest) = args.split_first().ok_or_else(|| CliError {
                http_status: 400,
                code: "MissingParameter".into(),
                message: "an action is required".into(),
            })?;
            let params = parse_params(rest)?;
            let kms = open_store(cli.store)?;
            let caller = kms_cli::caller(&kms, cli.principal.as_deref(), cli.source_ip.as_deref())?;
            Ok(with_request_id(
                run_action(&kms.as_caller(&caller), action, params)?,
                request_id,
            ))
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
