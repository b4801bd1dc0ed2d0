import java.nio.charset.StandardCharsets;
import java.security.Key;
import java.security.KeyFactory;
import java.security.KeyStore;
import java.security.PrivateKey;
import java.security.Provider;
import java.security.PublicKey;
import java.security.SecureRandom;
import java.security.Security;
import java.security.Signature;
import java.security.cert.Certificate;
import java.security.spec.AlgorithmParameterSpec;
import java.security.spec.MGF1ParameterSpec;
import java.security.spec.PSSParameterSpec;
import java.security.spec.X509EncodedKeySpec;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Base64;
import java.util.Collections;
import java.util.List;
import javax.crypto.AEADBadTagException;
import javax.crypto.Cipher;
import javax.crypto.SecretKey;
import javax.crypto.spec.GCMParameterSpec;

/**
 * Drives a PKCS#11 token through Java 17's SunPKCS11 provider, as a Java application would.
 *
 * <p>Usage: {@code java TesseraP11Test <sunpkcs11-config> <pin> <ec-alias> <rsa-alias> <aes-alias>}, or
 * {@code java TesseraP11Test --rotation <sunpkcs11-config> <pin> <alias> <spki> <old-alias> <old-spki>}
 * for an EC key that was rotated (see {@link #rotation}).
 *
 * <ul>
 *   <li>loads the "PKCS11" KeyStore with the PIN and prints every alias ({@code ALIAS <name> <entry
 *       type> <key algorithm>});
 *   <li>signs with SHA256withECDSA, SHA256withRSA, RSASSA-PSS and SHA256withRSASSA-PSS (SHA-256,
 *       MGF1-SHA-256, salt 32) using the token's private keys, and verifies each signature with the
 *       JDK's own providers (never the PKCS#11 one) and the public key of the entry's certificate; a
 *       message changed by one bit must not verify;
 *   <li>encrypts and decrypts with AES/GCM/NoPadding (with AAD) under the token's AES key; a changed
 *       ciphertext must be rejected.
 * </ul>
 *
 * <p>Prints one {@code PASS <check>} or {@code FAIL <check>: <reason>} line per check, then {@code
 * SUMMARY passed=N failed=M}; exits 0 only when nothing failed (2 on bad usage).
 */
public final class TesseraP11Test {
    private static final byte[] MESSAGE =
            "Tessera through SunPKCS11: the quick brown fox".getBytes(StandardCharsets.UTF_8);
    private static final PSSParameterSpec PSS_SHA256 =
            new PSSParameterSpec("SHA-256", "MGF1", MGF1ParameterSpec.SHA256, 32, 1);

    private static int passed;
    private static int failed;

    private TesseraP11Test() {}

    public static void main(String[] args) {
        if (args.length > 0 && args[0].equals("--rotation")) {
            rotation(args);
            return;
        }
        if (args.length != 5) {
            System.err.println(
                    "usage: TesseraP11Test <sunpkcs11-config> <pin> <ec-alias> <rsa-alias> <aes-alias>");
            System.exit(2);
        }
        String config = args[0];
        char[] pin = args[1].toCharArray();
        String ecAlias = args[2];
        String rsaAlias = args[3];
        String aesAlias = args[4];

        Provider p11;
        KeyStore ks;
        try {
            // Deliberately not added to the Security provider list: Signature.getInstance(alg) without
            // a provider then can only pick one of the JDK's software providers.
            p11 = Security.getProvider("SunPKCS11").configure(config);
            ks = KeyStore.getInstance("PKCS11", p11);
            ks.load(null, pin);
            pass("keystore-load (" + p11.getName() + ")");
        } catch (Exception e) {
            fail("keystore-load", e);
            finish();
            return;
        }

        List<String> aliases;
        try {
            aliases = Collections.list(ks.aliases());
            Collections.sort(aliases);
            for (String alias : aliases) {
                System.out.println("ALIAS " + alias + " " + describe(ks, alias));
            }
        } catch (Exception e) {
            fail("keystore-aliases", e);
            finish();
            return;
        }
        expectAlias(ks, aliases, ecAlias, KeyStore.PrivateKeyEntry.class);
        expectAlias(ks, aliases, rsaAlias, KeyStore.PrivateKeyEntry.class);
        expectAlias(ks, aliases, aesAlias, KeyStore.SecretKeyEntry.class);

        signAndVerify(ks, p11, ecAlias, "SHA256withECDSA", "SHA256withECDSA", null);
        signAndVerify(ks, p11, rsaAlias, "SHA256withRSA", "SHA256withRSA", null);
        // RSASSA-PSS: SunPKCS11 hashes in Java and signs the digest (CKM_RSA_PKCS_PSS);
        // SHA256withRSASSA-PSS leaves the hashing to the token (CKM_SHA256_RSA_PKCS_PSS). The JDK's
        // software providers only know the former name.
        signAndVerify(ks, p11, rsaAlias, "RSASSA-PSS", "RSASSA-PSS", PSS_SHA256);
        signAndVerify(ks, p11, rsaAlias, "SHA256withRSASSA-PSS", "RSASSA-PSS", PSS_SHA256);
        aesGcmRoundTrip(ks, p11, aesAlias);
        finish();
    }

    /**
     * The rotation mode, for an EC key with two versions: {@code <alias>} is the key's label, which
     * only its primary version carries, {@code <old-alias>} the label of the older version
     * ({@code <label>@<version id>}); {@code <spki>} and {@code <old-spki>} are their public keys
     * (base64 DER SubjectPublicKeyInfo, as the KMS's GetPublicKey gives them). Checks that the
     * KeyStore lists {@code <alias>} exactly once (SunPKCS11 turns a label that several certificates
     * share into {@code <label>/<issuer>/<serial>} aliases) and {@code <old-alias>} too, that each
     * alias's certificate carries its version's public key and not the other's, and that
     * SHA256withECDSA signatures by each alias's private key verify (JDK providers) with its
     * version's public key only.
     */
    private static void rotation(String[] args) {
        if (args.length != 7) {
            System.err.println("usage: TesseraP11Test --rotation <sunpkcs11-config> <pin> <alias> <spki> "
                    + "<old-alias> <old-spki>");
            System.exit(2);
        }
        String config = args[1];
        char[] pin = args[2].toCharArray();
        String alias = args[3];
        byte[] spki = Base64.getDecoder().decode(args[4]);
        String oldAlias = args[5];
        byte[] oldSpki = Base64.getDecoder().decode(args[6]);

        Provider p11;
        KeyStore ks;
        List<String> aliases;
        try {
            p11 = Security.getProvider("SunPKCS11").configure(config);
            ks = KeyStore.getInstance("PKCS11", p11);
            ks.load(null, pin);
            pass("keystore-load (" + p11.getName() + ")");
            aliases = Collections.list(ks.aliases());
            Collections.sort(aliases);
            for (String a : aliases) {
                System.out.println("ALIAS " + a + " " + describe(ks, a));
            }
        } catch (Exception e) {
            fail("keystore-load", e);
            finish();
            return;
        }

        List<String> forLabel = new ArrayList<>();
        for (String a : aliases) {
            if (a.equals(alias) || a.startsWith(alias + "/")) {
                forLabel.add(a);
            }
        }
        if (forLabel.equals(List.of(alias))) {
            pass("alias-unique " + alias);
        } else {
            fail("alias-unique " + alias, "the aliases for the label are " + forLabel + " (all: " + aliases + ")");
        }
        expectAlias(ks, aliases, alias, KeyStore.PrivateKeyEntry.class);
        expectAlias(ks, aliases, oldAlias, KeyStore.PrivateKeyEntry.class);
        certificateKey(ks, alias, spki, oldSpki);
        certificateKey(ks, oldAlias, oldSpki, spki);
        signWithVersion(ks, p11, alias, spki, oldSpki);
        signWithVersion(ks, p11, oldAlias, oldSpki, spki);
        finish();
    }

    /** Whether the certificate of {@code alias} carries the public key {@code spki}, not {@code other}. */
    private static void certificateKey(KeyStore ks, String alias, byte[] spki, byte[] other) {
        String check = "certificate-key " + alias;
        try {
            Certificate cert = ks.getCertificate(alias);
            if (cert == null) {
                fail(check, "alias " + alias + " has no certificate");
                return;
            }
            byte[] encoded = cert.getPublicKey().getEncoded();
            if (Arrays.equals(encoded, other)) {
                fail(check, "the certificate carries the other version's public key");
            } else if (!Arrays.equals(encoded, spki)) {
                fail(check, "the certificate carries " + Base64.getEncoder().encodeToString(encoded)
                        + ", expected " + Base64.getEncoder().encodeToString(spki));
            } else {
                pass(check + " (the version's public key)");
            }
        } catch (Exception e) {
            fail(check, e);
        }
    }

    /**
     * SHA256withECDSA by the private key of {@code alias} must verify with {@code spki} (the JDK's
     * own providers), not over a changed message, and not with {@code other}.
     */
    private static void signWithVersion(KeyStore ks, Provider p11, String alias, byte[] spki, byte[] other) {
        String check = "SHA256withECDSA with " + alias + " verified with its version's public key";
        try {
            Key key = ks.getKey(alias, null);
            if (!(key instanceof PrivateKey)) {
                fail(check, "alias " + alias + " has no private key (got " + key + ")");
                return;
            }
            KeyFactory factory = KeyFactory.getInstance("EC");
            PublicKey expected = factory.generatePublic(new X509EncodedKeySpec(spki));
            PublicKey otherKey = factory.generatePublic(new X509EncodedKeySpec(other));

            Signature signer = Signature.getInstance("SHA256withECDSA", p11);
            signer.initSign((PrivateKey) key);
            signer.update(MESSAGE);
            byte[] signature = signer.sign();

            Signature verifier = Signature.getInstance("SHA256withECDSA");
            if (verifier.getProvider() == p11 || verifier.getProvider().getName().startsWith("SunPKCS11")) {
                fail(check, "the verifier came from the PKCS#11 provider");
                return;
            }
            verifier.initVerify(expected);
            verifier.update(MESSAGE);
            if (!verifier.verify(signature)) {
                fail(check, "the signature did not verify with the version's public key");
                return;
            }
            verifier.initVerify(otherKey);
            verifier.update(MESSAGE);
            if (verifier.verify(signature)) {
                fail(check, "the signature also verified with the other version's public key");
                return;
            }
            byte[] changed = MESSAGE.clone();
            changed[0] ^= 1;
            verifier.initVerify(expected);
            verifier.update(changed);
            if (verifier.verify(signature)) {
                fail(check, "the signature also verified over a changed message");
                return;
            }
            pass(check + " (by " + verifier.getProvider().getName()
                    + "; the other version's key and a changed message rejected)");
        } catch (Exception e) {
            fail(check, e);
        }
    }

    /** "PrivateKeyEntry EC", "SecretKeyEntry AES", "TrustedCertificateEntry -"... */
    private static String describe(KeyStore ks, String alias) throws Exception {
        String kind;
        if (ks.entryInstanceOf(alias, KeyStore.PrivateKeyEntry.class)) {
            kind = "PrivateKeyEntry";
        } else if (ks.entryInstanceOf(alias, KeyStore.SecretKeyEntry.class)) {
            kind = "SecretKeyEntry";
        } else if (ks.entryInstanceOf(alias, KeyStore.TrustedCertificateEntry.class)) {
            kind = "TrustedCertificateEntry";
        } else {
            kind = "UnknownEntry";
        }
        String algorithm = "-";
        if (ks.isKeyEntry(alias)) {
            Key key = ks.getKey(alias, null);
            algorithm = key == null ? "null" : key.getAlgorithm();
        }
        return kind + " " + algorithm;
    }

    private static void expectAlias(
            KeyStore ks, List<String> aliases, String alias, Class<? extends KeyStore.Entry> type) {
        String check = "alias-listed " + alias + " as " + type.getSimpleName();
        try {
            if (!aliases.contains(alias)) {
                fail(check, "not among the aliases " + aliases);
            } else if (!ks.entryInstanceOf(alias, type)) {
                fail(check, "listed, but not a " + type.getSimpleName() + " (" + describe(ks, alias) + ")");
            } else {
                pass(check);
            }
        } catch (Exception e) {
            fail(check, e);
        }
    }

    private static void signAndVerify(
            KeyStore ks,
            Provider p11,
            String alias,
            String algorithm,
            String verifyAlgorithm,
            AlgorithmParameterSpec params) {
        String check = algorithm + " with " + alias;
        try {
            Key key = ks.getKey(alias, null);
            if (!(key instanceof PrivateKey)) {
                fail(check, "alias " + alias + " has no private key (got " + key + ")");
                return;
            }
            Certificate cert = ks.getCertificate(alias);
            if (cert == null) {
                fail(check, "alias " + alias + " has no certificate to take the public key from");
                return;
            }
            PublicKey publicKey = cert.getPublicKey();

            Signature signer = Signature.getInstance(algorithm, p11);
            if (params != null) {
                signer.setParameter(params);
            }
            signer.initSign((PrivateKey) key);
            signer.update(MESSAGE);
            byte[] signature = signer.sign();

            Signature verifier = Signature.getInstance(verifyAlgorithm);
            if (params != null) {
                verifier.setParameter(params);
            }
            verifier.initVerify(publicKey);
            verifier.update(MESSAGE);
            boolean good = verifier.verify(signature);
            String verifiedBy = verifier.getProvider().getName();
            if (verifier.getProvider() == p11 || verifiedBy.startsWith("SunPKCS11")) {
                fail(check, "the verifier came from the PKCS#11 provider " + verifiedBy);
                return;
            }
            if (!good) {
                fail(check, "signature by " + signer.getProvider().getName() + " did not verify with "
                        + verifiedBy);
                return;
            }

            byte[] changed = MESSAGE.clone();
            changed[0] ^= 1;
            Signature tamperVerifier = Signature.getInstance(verifyAlgorithm, verifier.getProvider());
            if (params != null) {
                tamperVerifier.setParameter(params);
            }
            tamperVerifier.initVerify(publicKey);
            tamperVerifier.update(changed);
            if (tamperVerifier.verify(signature)) {
                fail(check, "the signature also verified over a changed message");
                return;
            }
            pass(check + " (signed by " + signer.getProvider().getName() + ", " + signature.length
                    + "-byte signature verified by " + verifiedBy + ", changed message rejected)");
        } catch (Exception e) {
            fail(check, e);
        }
    }

    private static void aesGcmRoundTrip(KeyStore ks, Provider p11, String alias) {
        String check = "AES/GCM/NoPadding with " + alias;
        try {
            Key key = ks.getKey(alias, null);
            if (!(key instanceof SecretKey)) {
                fail(check, "alias " + alias + " has no secret key (got " + key + ")");
                return;
            }
            byte[] iv = new byte[12];
            new SecureRandom().nextBytes(iv);
            byte[] aad = "context".getBytes(StandardCharsets.UTF_8);

            Cipher enc = Cipher.getInstance("AES/GCM/NoPadding", p11);
            enc.init(Cipher.ENCRYPT_MODE, key, new GCMParameterSpec(128, iv));
            enc.updateAAD(aad);
            byte[] ciphertext = enc.doFinal(MESSAGE);
            if (ciphertext.length != MESSAGE.length + 16) {
                fail(check, "ciphertext is " + ciphertext.length + " bytes, expected " + (MESSAGE.length + 16));
                return;
            }
            if (Arrays.equals(Arrays.copyOf(ciphertext, MESSAGE.length), MESSAGE)) {
                fail(check, "the ciphertext contains the plaintext");
                return;
            }

            Cipher dec = Cipher.getInstance("AES/GCM/NoPadding", p11);
            dec.init(Cipher.DECRYPT_MODE, key, new GCMParameterSpec(128, iv));
            dec.updateAAD(aad);
            byte[] plaintext = dec.doFinal(ciphertext);
            if (!Arrays.equals(plaintext, MESSAGE)) {
                fail(check, "decryption returned different bytes");
                return;
            }

            byte[] changed = ciphertext.clone();
            changed[0] ^= 1;
            Cipher tampered = Cipher.getInstance("AES/GCM/NoPadding", p11);
            tampered.init(Cipher.DECRYPT_MODE, key, new GCMParameterSpec(128, iv));
            tampered.updateAAD(aad);
            try {
                tampered.doFinal(changed);
                fail(check, "a changed ciphertext decrypted");
                return;
            } catch (AEADBadTagException expected) {
                // the tag check failed, as it must
            }
            pass(check + " (round trip of " + MESSAGE.length + " bytes, changed ciphertext rejected)");
        } catch (Exception e) {
            fail(check, e);
        }
    }

    private static void pass(String check) {
        passed++;
        System.out.println("PASS " + check);
    }

    private static void fail(String check, String reason) {
        failed++;
        System.out.println("FAIL " + check + ": " + reason);
    }

    private static void fail(String check, Throwable e) {
        fail(check, e.toString());
        e.printStackTrace();
    }

    private static void finish() {
        System.out.println("SUMMARY passed=" + passed + " failed=" + failed);
        System.exit(failed == 0 && passed > 0 ? 0 : 1);
    }
}
